"""The soak mode's summary line, on recorded results (no database, no worker)."""

from webhook_tools.bench import soak


def test_summary_prints_each_figure():
    line = soak.summary({"events": 162000, "rss_growth_mib": 1.5, "fd_range": [40, 44],
                         "db_connection_range": [13, 14], "jobs_kib_range": [600, 920],
                         "key_tables_kib_range": [48, 96]})
    assert line == ("soak: 162000 events; memory growth after warm-up 1.5 MiB; open files [40, 44]; "
                    "database connections [13, 14]; jobs KiB [600, 920]; key tables KiB [48, 96]")


def test_summary_of_a_run_that_failed_early():
    assert soak.summary({}) == ("soak: 0 events; memory growth after warm-up - MiB; open files -; "
                                "database connections -; jobs KiB -; key tables KiB -")
