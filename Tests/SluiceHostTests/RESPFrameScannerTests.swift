import XCTest
@testable import SluiceHost

final class RESPFrameScannerTests: XCTestCase {
    func testPlaceholder() {}
}
