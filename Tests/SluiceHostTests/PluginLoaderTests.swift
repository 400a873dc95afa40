import Foundation
import XCTest
import PluginABI
@testable import SluiceHost

/// Loads the deliberately broken plugins of Tests/fixtures/plugins (built into build/fixtures by
/// scripts/build-test-fixtures.sh, or SLUICE_FIXTURES) and checks each is refused for its reason.
final class PluginLoaderTests: XCTestCase {
    static var fixtures: String {
        if let dir = ProcessInfo.processInfo.environment["SLUICE_FIXTURES"] { return dir }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent("build/fixtures").path
    }

    func refusal(_ file: String) throws -> String {
        let path = Self.fixtures + "/" + file
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "missing fixture \(path); run scripts/build-test-fixtures.sh")
        switch PluginLoader.load(path: path) {
        case .success(let plugin):
            XCTFail("\(file) was loaded as \(plugin.name)")
            return ""
        case .failure(let refused):
            return refused.reason
        }
    }

    func testNotASharedObject() throws {
        XCTAssertTrue(try refusal("not-a-shared-object.so").hasPrefix("not a shared object"))
    }

    func testNoEntrySymbol() throws {
        XCTAssertTrue(try refusal("libno-entry.so").hasPrefix("no entry symbol"))
    }

    func testWrongMajorNamesBothVersions() throws {
        let reason = try refusal("libwrong-major.so")
        XCTAssertTrue(reason.hasPrefix("wrong ABI major"), reason)
        XCTAssertTrue(reason.contains("ABI 99."), reason)
        XCTAssertTrue(reason.contains("host speaks ABI \(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR)"), reason)
    }

    func testBadMagic() throws {
        XCTAssertTrue(try refusal("libbad-magic.so").hasPrefix("bad magic 0xDEADBEEF"))
    }

    func testInitRefuses() throws {
        XCTAssertTrue(try refusal("libinit-refuses.so").contains("returned NULL"))
    }

    func testUnresolvedSymbol() throws {
        let reason = try refusal("libunresolved-symbol.so")
        XCTAssertTrue(reason.hasPrefix("dlopen failed") && reason.contains("undefined symbol"), reason)
    }

    func testOlderMinorWithSmallerStructsLoads() throws {
        let path = Self.fixtures + "/libolder-minor.so"
        guard case .success(let plugin) = PluginLoader.load(path: path) else {
            return XCTFail("older-minor plugin refused")
        }
        XCTAssertEqual(plugin.name, "older-minor")
        XCTAssertNil(plugin.transforms.first?.onResponses, "a field beyond the declared struct_size was read")
    }

    func testNewerMinorThatRequiresItIsRefusedNamingBothVersions() throws {
        let reason = try refusal("libnewer-minor-required.so")
        let host = "\(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR)"
        let plugin = "\(SLUICE_ABI_VERSION_MAJOR).\(SLUICE_ABI_VERSION_MINOR + 1)"
        XCTAssertEqual(reason, "plugin requires ABI \(plugin), host speaks ABI \(host)")
    }

    func testNewerMinorThatChecksTheHostLoads() throws {
        guard case .success(let plugin) = PluginLoader.load(path: Self.fixtures + "/libnewer-minor-checked.so") else {
            return XCTFail("a newer-minor plugin without SLUICE_PLUGIN_FLAG_REQUIRES_MINOR was refused")
        }
        XCTAssertEqual(plugin.abiMinor, UInt32(SLUICE_ABI_VERSION_MINOR + 1))
    }

    func testDirectoryListsLoadedAndRefused() throws {
        let result = PluginLoader.loadDirectory(Self.fixtures)
        XCTAssertTrue(result.loaded.contains { $0.name == "misbehaving" })
        XCTAssertGreaterThanOrEqual(result.refused.count, 6, "\(result.refused)")
    }
}
