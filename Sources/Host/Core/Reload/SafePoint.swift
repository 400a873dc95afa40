/// Whether a client connection may move to a newer configuration generation now: the rule of
/// hot reload's "safe point", as a plain value so it can be tested on its own.
///
/// A connection moves only between requests, when nothing of its old chain can still be needed:
/// no request read and unanswered (that includes a blocking command such as BLPOP, which is a
/// request in flight until its reply), no requests read and held back by the in-flight budget, no
/// MULTI open, no subscription or MONITOR (the backend connection is in a mode the new chain's
/// plugins never saw start), no plugin work of the old chain still pending (a call a plugin
/// holds, a send of its own in flight), and no backend connection of its own (with its database,
/// user, name…) to a sink the new generation changes or removes: that state cannot follow it, so
/// such a client stays on the old generation until the grace period ends. A closing connection
/// never moves: it is on its way out.
struct SafePoint: Equatable {
    var requestsInFlight: Int
    var requestsHeldBack: Bool
    var inTransaction: Bool
    var subscribed: Bool
    var pluginWorkPending: Bool
    var backendStateOnChangedSink: Bool = false
    var closing: Bool

    /// Why the connection cannot move now (nil: it can).
    var obstacle: String? {
        if closing { return "closing" }
        if requestsInFlight > 0 { return "requests in flight" }
        if requestsHeldBack { return "requests held back" }
        if inTransaction { return "inside MULTI" }
        if subscribed { return "subscribed or monitoring" }
        if pluginWorkPending { return "plugin work pending" }
        if backendStateOnChangedSink { return "its backend session is on a sink the reload changed" }
        return nil
    }

    var allowsMove: Bool { obstacle == nil }
}
