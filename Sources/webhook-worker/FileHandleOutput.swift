import Foundation

enum FileHandleOutput {
    static func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}
