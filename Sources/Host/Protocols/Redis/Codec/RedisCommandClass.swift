/// What the host's own per-request checks need to know of a Redis request, worked out once, where
/// the request is read, instead of by each check parsing the command name again.
///
/// A request is *plain* when its command is one that none of those checks treats specially: a name
/// of at most three letters (GET, SET, DEL, TTL…; every special command is longer) or a data
/// command whose reply kind `RedisReplyPlan.expectedReply` knows (INCR, HGET, LPUSH…). A plain
/// request is forwarded (`RedisLocalAnswers`), can share a backend connection
/// (`RedisConnectionState`), changes no session fact (`SessionFacts`) and no connection setting
/// a route must replay (`ClientStateLog`), and is no subscription. `RedisCommandClassTests` checks
/// this against every check for every name of up to three letters and every known reply kind.
///
/// The source handler marks a request batch whose requests are all plain (`Batch.markPlain`), with
/// the reply kinds it expects; the checks then skip the batch. Any change a plugin makes to the
/// batch drops the mark, and they read its requests themselves.
enum RedisCommandClass {
    /// The reply kind (`RedisReplyPlan.expectedReply`) of a plain request, or nil for any other.
    @inline(__always)
    static func plainReply(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard let name = RedisConnectionState.commandName(bytes), !name.isEmpty, name.count <= 8 else { return nil }
        let reply = RedisReplyPlan.replyKind(ofCommandNamed: name)
        return name.count <= 3 || reply != RedisReplyPlan.anyReply ? reply : nil
    }
}
