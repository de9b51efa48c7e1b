"""The per-endpoint phases' figures, targets and receivers."""

import urllib.error
import urllib.request

from webhook_tools.bench.endpoint_figures import arrivals_after, inside_window, rate_in_window, sent_inside_window
from webhook_tools.bench.endpoint_servers import slow_endpoint, throttling_endpoint
from webhook_tools.bench.targets import targets


def post(port, delivery):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=b"{}", method="POST",
                                     headers={"X-Webhook-Delivery": delivery})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_rate_in_window_counts_only_inside_its_bounds():
    assert rate_in_window([0.5, 1.0, 1.5, 2.0, 3.5], 1.0, 3.0) == 1.5
    assert rate_in_window([], 1.0, 3.0) == 0.0
    assert rate_in_window([1.0], 3.0, 3.0) is None


def test_inside_window_ignores_requests_before_the_answer_and_after_the_pause():
    requests = [(9.0, 10.0, "in flight with the 429", 204), (10.5, 10.5, "inside", 204),
                (11.9, 12.0, "inside", 204), (12.0, 12.0, "at the end", 204), (13.0, 13.0, "after", 204)]
    assert inside_window(requests, 10.0, 2) == 2
    assert inside_window(requests, 13.0, 2) == 0


def test_sent_inside_window_excuses_only_the_first_requests_arriving_at_once():
    # (arrived, answered, delivery id, status); the 429 answered at 10.0, Retry-After 2 s.
    first = [(9.99, 10.0, "a", 429), (10.003, 10.004, "b", 204), (10.005, 10.006, "c", 204)]
    assert sent_inside_window(first, 10.0, 2, 4, 0.02) == 0
    # One of the first 4 arriving late may have been sent late: counted.
    assert sent_inside_window(first + [(10.5, 10.5, "d", 204)], 10.0, 2, 4, 0.02) == 1
    # Any request after the first 4 inside the window is counted, however soon; after it, none.
    later = first + [(10.006, 10.007, "d", 204), (10.008, 10.009, "e", 204), (12.5, 12.5, "f", 204)]
    assert sent_inside_window(later, 10.0, 2, 4, 0.02) == 1


def test_issue_22_targets_judge_their_figures():
    met = targets({
        "one_endpoint": {"deliveries_per_second": 2100.0},
        "delivery_2_clients": {"deliveries_per_second": 2900.0},
        "slow_endpoint": {"deliveries_per_second": 151.0, "in_flight_peak": 31},
        "fairness": {"new_insert_to_receipt_ms": {"p50": 50.0}},
        "retry_after": {"requests_inside_window": 3, "requests_sent_inside_window": 1},
    })
    verdicts = {key: met[key]["verdict"] for key in ("one_endpoint", "two_endpoints", "slow_endpoint",
                                                      "slow_endpoint_in_flight", "fairness_p50",
                                                      "retry_after_inside")}
    assert verdicts == {"one_endpoint": "met", "two_endpoints": "MISSED", "slow_endpoint": "met",
                        "slow_endpoint_in_flight": "MISSED", "fairness_p50": "met", "retry_after_inside": "MISSED"}
    # Judged on the requests sent after an answer came back, not on the first ones sent at once.
    sent_before = targets({"retry_after": {"requests_inside_window": 3, "requests_sent_inside_window": 0}})
    assert sent_before["retry_after_inside"]["verdict"] == "met"
    assert sent_before["retry_after_inside"]["value"] == 0
    assert targets({})["fairness_p50"]["verdict"] == "-"


def test_throttling_endpoint_answers_429_once_then_204_and_records_both():
    server = throttling_endpoint(3)
    try:
        first, second = post(server.port, "d1"), post(server.port, "d2")
        requests, peak = server.snapshot()
    finally:
        server.close()
    assert first[0] == 429 and first[1].get("Retry-After") == "3"
    assert second[0] == 204
    assert [(d, status) for _, _, d, status in requests] == [("d1", 429), ("d2", 204)]
    assert all(answered >= arrived for arrived, answered, _, _ in requests)
    assert peak == 1


def test_slow_endpoint_answers_after_its_delay():
    server = slow_endpoint(0.05)
    try:
        status, _ = post(server.port, "d1")
        (arrived, answered, delivery, recorded), = server.snapshot()[0]
    finally:
        server.close()
    assert status == 204 and recorded == 204 and delivery == "d1"
    assert answered - arrived >= 0.05


def test_arrivals_after_gives_the_offsets_of_the_requests_inside_the_window():
    requests = [(9.9, 9.9, "a", 204), (10.0, 10.0, "b", 429), (10.0012, 10.0013, "c", 204),
                (10.5, 10.5, "d", 204), (12.5, 12.5, "e", 204)]
    assert arrivals_after(requests, 10.0, 2) == [1.2, 500.0]
