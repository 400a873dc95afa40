import NIOCore

/// The channel handler of a `cassandra` source's client connection: `ClientSession` does the work
/// for `CQLSource`; this concrete class lets NIO (and the response slots) call the code specialised
/// for CQL.
final class CQLClientHandler: ClientSession<CQLSource>, ChannelInboundHandler, ResponseSlotOwner {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    init(generation: ConfigGeneration, loopGeneration: LoopGeneration, sourceKey: String, chainIndex: Int,
         maxFrameBytes: Int, maxClients: Int, authentication: CQLClientConnection.Authentication,
         limits: ClientLimits, requestBudget: RequestBufferBudget, usesTLS: Bool, metrics: SourceMetrics) {
        super.init(generation: generation, loopGeneration: loopGeneration, sourceKey: sourceKey, chainIndex: chainIndex,
                   settings: CQLSource.Settings(maxFrameBytes: maxFrameBytes, authentication: authentication),
                   maxClients: maxClients, limits: limits, requestBudget: requestBudget, usesTLS: usesTLS,
                   metrics: metrics)
        bindSlotOwner(self)
    }

    func channelActive(context: ChannelHandlerContext) {
        sessionActive(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        sessionRead(context: context, data: unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        sessionInactive(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        sessionUserEvent(context: context, event: event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        sessionWritabilityChanged(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        sessionError(context: context, error: error)
    }

    // ResponseSlotOwner: the slots of this client land here, specialised for CQL.

    func slotCompleted(_ slot: ResponseSlot) {
        sessionSlotCompleted(slot)
    }

    func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int) -> Batch {
        sessionErrorReplies(message, count: count, replyKeys: replyKeys, first: first)
    }

    func slotReplied(_ slot: ResponseSlot, _ replies: Batch) {
        sessionSlotReplied(slot, replies)
    }
}
