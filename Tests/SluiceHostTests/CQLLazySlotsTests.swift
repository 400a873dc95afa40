import XCTest
@testable import SluiceHost

/// The accessors' per-message (and per-statement) slots: filled in any order, moved with inserts and
/// removals, emptied for the next batch.
final class CQLLazySlotsTests: XCTestCase {
    private final class Box {
        let value: Int
        init(_ value: Int) { self.value = value }
    }

    private func values(_ slots: CQLLazySlots<Box>, _ count: Int) -> [Int?] {
        (0..<count).map { slots[$0]?.value }
    }

    func testSlotsFilledInAnyOrderMoveWithTheirMessagesAndEmptyForReuse() {
        var slots = CQLLazySlots<Box>()
        slots[0] = Box(0)
        slots[3] = Box(3)  // past the end: 1 and 2 stay empty
        slots[1] = Box(1)
        slots[7] = nil     // emptying a slot past the end changes nothing
        XCTAssertEqual(values(slots, 6), [0, 1, nil, 3, nil, nil])
        slots.insertEmpty(at: 0)
        XCTAssertEqual(values(slots, 6), [nil, 0, 1, nil, 3, nil])
        slots.remove(at: 2)
        XCTAssertEqual(values(slots, 6), [nil, 0, nil, 3, nil, nil])
        slots[2] = Box(2)
        XCTAssertEqual(values(slots, 6), [nil, 0, 2, 3, nil, nil])
        slots.removeAll()
        XCTAssertEqual(values(slots, 6), [nil, nil, nil, nil, nil, nil])
        // A next batch, filled in order as its frames are read.
        for i in 0..<20 { slots[i] = Box(100 + i) }
        XCTAssertEqual(values(slots, 21), (0..<20).map { 100 + $0 } + [nil])
    }
}
