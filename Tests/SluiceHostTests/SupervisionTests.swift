import XCTest
@testable import SluiceHost

/// The supervisor's pure parts: the `supervision:` keys, the crash handler's record line, and
/// when repeated crashes quarantine a chain. (Processes, signals and restarts: test_supervision.py.)
final class SupervisionTests: XCTestCase {
    let base = """
        sinks: { primary: { redis: { address: 127.0.0.1:6379 } } }
        chains: { main: [ { sink: primary } ] }
        sources: [ { redis: { listen: 127.0.0.1:7000, chain: main } } ]

        """

    func testSupervisionKeysAndTheirDefaults() throws {
        let defaults = try SluiceConfig.parse(base, file: "/t.yaml").supervision
        XCTAssertEqual([defaults.workers, defaults.quarantineAfter, defaults.quarantineWindowMilliseconds], [1, 0, 60_000])
        let set = try SluiceConfig.parse(base + "supervision: { workers: 4, quarantine_after: 3, quarantine_window_ms: 5000 }\n",
                                         file: "/t.yaml").supervision
        XCTAssertEqual([set.workers, set.quarantineAfter, set.quarantineWindowMilliseconds], [4, 3, 5000])
    }

    func testBadSupervisionValuesAreRefusedAtTheirPosition() {
        for (text, message) in [
            ("supervision: { workers: 0 }", "/t.yaml:4:25: supervision.workers: expected an integer in 1...64"),
            ("supervision: { worker: 2 }", "/t.yaml:4:16: supervision: unknown key 'worker' (expected one of: workers, quarantine_after, quarantine_window_ms)"),
        ] {
            XCTAssertThrowsError(try SluiceConfig.parse(base + text + "\n", file: "/t.yaml")) { error in
                XCTAssertEqual((error as? ConfigErrors)?.errors.map(\.description), [message])
            }
        }
    }

    func testTheCrashRecordLineNamesPluginTransformHookAndStep() throws {
        let label = CrashLabels.format(plugin: "crashing", transform: "crash-after", hook: .onRequests,
                                       chain: "main", step: "main[0]")
        let record = try XCTUnwrap(WorkerCrashRecord(line: "crash signal=11 " + label))
        XCTAssertEqual(record.signal, 11)
        XCTAssertEqual(record.running, "plugin crashing (transform crash-after, hook on_requests, step main[0])")
        XCTAssertEqual(record.chain, "main")
        let host = try XCTUnwrap(WorkerCrashRecord(line: "crash signal=6 host"))
        XCTAssertNil(host.plugin)
        XCTAssertNil(WorkerCrashRecord(line: "ready"))
    }

    func testRepeatedCrashesWithinTheWindowQuarantineTheChainOnce() throws {
        var ledger = CrashLedger(settings: SupervisionSettings(workers: 2, quarantineAfter: 3, quarantineWindowMilliseconds: 1000))
        let crash = try XCTUnwrap(WorkerCrashRecord(line: "crash signal=11 " + CrashLabels.format(
            plugin: "p", transform: "t", hook: .onResponses, chain: "main", step: "main[1]")))
        XCTAssertNil(ledger.record(crash, at: 10_000))
        XCTAssertNil(ledger.record(crash, at: 10_500))
        XCTAssertNil(ledger.record(crash, at: 11_200), "the first crash fell out of the window")
        let quarantine = try XCTUnwrap(ledger.record(crash, at: 11_300))
        XCTAssertEqual(quarantine.chain, "main")
        XCTAssertEqual(quarantine.message, "sluice: chain 'main' is out of service: its plugin p (transform t, on_responses) crashed 3 workers within 1000 ms")
        XCTAssertNil(ledger.record(crash, at: 11_400), "reported once")
        XCTAssertEqual(ledger.environment[WorkerRole.Variable.crashes], "p\ton_responses\t5")
        XCTAssertEqual(ledger.environment[WorkerRole.Variable.quarantine], "main\t" + quarantine.message)
    }

    func testWithoutQuarantineCrashesAreOnlyCounted() throws {
        var ledger = CrashLedger(settings: SupervisionSettings())
        let crash = try XCTUnwrap(WorkerCrashRecord(line: "crash signal=11 plugin=p transform=t hook=timer chain=c step=c[0]"))
        for time in 0..<10 { XCTAssertNil(ledger.record(crash, at: UInt64(time))) }
        XCTAssertEqual(ledger.environment[WorkerRole.Variable.quarantine], "")
    }

    func testCrashesInControlCallsAreCountedButNeverQuarantine() throws {
        var ledger = CrashLedger(settings: SupervisionSettings(workers: 1, quarantineAfter: 1, quarantineWindowMilliseconds: 1000))
        for hook in [PluginHook.controlFunction, .controlPublish] {
            let crash = try XCTUnwrap(WorkerCrashRecord(line: "crash signal=11 " + CrashLabels.format(
                plugin: "p", transform: "t", hook: hook, chain: "main", step: "main[0]")))
            XCTAssertNil(ledger.record(crash, at: 10))
        }
        XCTAssertEqual(ledger.environment[WorkerRole.Variable.crashes], "p\tcontrol_function\t1\np\tcontrol_publish\t1")
        XCTAssertEqual(ledger.environment[WorkerRole.Variable.quarantine], "")
    }
}
