import NIOCore

/// A NIO channel compared by identity: the `Link` of a backend connection's state machine, so that
/// events from a channel the connection already gave up are told apart from the current one's.
struct BackendChannel: Equatable {
    let channel: Channel

    init(_ channel: Channel) {
        self.channel = channel
    }

    static func == (a: BackendChannel, b: BackendChannel) -> Bool { a.channel === b.channel }
}
