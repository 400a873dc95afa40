import XCTest
@testable import SluiceHost

/// The accessors' per-message (and per-statement) slots: filled in any order, moved with inserts and
/// removals, emptied for the next batch.
final class CQLLazySlotsTests: XCTestCase {
    private final class Box {
        var value: Int
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
        slots.recycleAll { $0.value = -1 }
        XCTAssertEqual(values(slots, 6), [nil, -1, -1, -1, nil, nil], "kept, emptied by the recycle function")
        // A next batch, filled in order as its frames are read.
        for i in 0..<20 { slots[i] = Box(100 + i) }
        XCTAssertEqual(values(slots, 21), (0..<20).map { 100 + $0 } + [nil])
    }

    /// Emptied for the next batch, a slot keeps its object when nothing else holds it (handed to
    /// the recycle function, once), drops it when something does, and slots past `maxRecycled` go.
    func testRecycleAllKeepsOnlyUnsharedObjectsAndAtMostMaxRecycled() {
        var slots = CQLLazySlots<Box>()
        let limit = CQLLazySlots<Box>.maxRecycled
        for i in 0..<(limit + 10) where i != 2 { slots[i] = Box(i) }
        let held = slots[1]  // a reference outside the slots: this object must not be reused
        var recycled: [Int] = []
        slots.recycleAll { recycled.append($0.value); $0.value = -1 }
        XCTAssertEqual(recycled, [0] + Array(3..<limit))
        XCTAssertEqual(values(slots, limit + 10), [-1, nil, nil] + Array(repeating: -1, count: limit - 3)
                       + Array(repeating: nil, count: 10))
        XCTAssertEqual(held?.value, 1, "the held object was left alone")
        XCTAssertFalse(slots[1] === held)
        // Recycled again with nothing new: the same objects, handed over again.
        weak let first = slots[0]
        recycled = []
        slots.recycleAll { recycled.append($0.value) }
        XCTAssertEqual(recycled.count, limit - 2)
        XCTAssertNotNil(first)
        XCTAssertTrue(slots[0] === first)
    }
}
