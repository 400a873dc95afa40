#if canImport(Glibc)
import Glibc
#endif
import CrashRecord

/// The plugin hooks the host calls, as the crash record names them.
enum PluginHook: String, CaseIterable {
    case configNew = "config_new"
    case instanceNew = "instance_new"
    case instanceFree = "instance_free"
    case onRequests = "on_requests"
    case onResponses = "on_responses"
    case timer = "timer"
    case sendCompletion = "send_completion"
    /// A control function (admin thread) and a control_publish callback (an event loop).
    case controlFunction = "control_function"
    case controlPublish = "control_publish"
}

/// One transform step's crash-record labels, one per hook: NUL-terminated C strings formatted once
/// when the plan is built ("plugin=P transform=T hook=H chain=C step=C[N]"), so that recording the
/// running step before a hook is a single thread-local pointer store (see sluice_crash_record.h).
/// They live as long as the process: a crash handler may read one at any time, so they are never freed.
struct CrashLabels {
    private let configNew, instanceNew, instanceFree, onRequests, onResponses, timer, sendCompletion: UnsafePointer<CChar>
    private let controlFunction, controlPublish: UnsafePointer<CChar>

    /// `label` is the step's "chain[position] transform" (RuntimeBuilder): its first word names the step.
    init(plugin: String, transform: String, label: String) {
        let step = label.split(separator: " ", maxSplits: 1).first.map(String.init) ?? label
        let chain = step.lastIndex(of: "[").map { String(step[..<$0]) } ?? step
        func make(_ hook: PluginHook) -> UnsafePointer<CChar> {
            let text = CrashLabels.format(plugin: plugin, transform: transform, hook: hook, chain: chain, step: step)
            return UnsafePointer(strdup(text)!)
        }
        configNew = make(.configNew)
        instanceNew = make(.instanceNew)
        instanceFree = make(.instanceFree)
        onRequests = make(.onRequests)
        onResponses = make(.onResponses)
        timer = make(.timer)
        sendCompletion = make(.sendCompletion)
        controlFunction = make(.controlFunction)
        controlPublish = make(.controlPublish)
    }

    /// The record's text: key=value words; values never hold spaces (replaced by '_').
    static func format(plugin: String, transform: String, hook: PluginHook, chain: String, step: String) -> String {
        func word(_ value: String) -> String { String(value.map { $0 == " " || $0 == "\n" ? "_" : $0 }) }
        return "plugin=\(word(plugin)) transform=\(word(transform)) hook=\(hook.rawValue) chain=\(word(chain)) step=\(word(step))"
    }

    @inline(__always)
    func pointer(_ hook: PluginHook) -> UnsafePointer<CChar> {
        switch hook {
        case .configNew: return configNew
        case .instanceNew: return instanceNew
        case .instanceFree: return instanceFree
        case .onRequests: return onRequests
        case .onResponses: return onResponses
        case .timer: return timer
        case .sendCompletion: return sendCompletion
        case .controlFunction: return controlFunction
        case .controlPublish: return controlPublish
        }
    }
}

/// Marks `hook` of `step` as running on this thread for the crash handler while `body` runs.
@inline(__always)
func recordingCrashStep<R>(_ labels: CrashLabels, _ hook: PluginHook, _ body: () -> R) -> R {
    let previous = sluice_crash_step_enter(labels.pointer(hook))
    defer { sluice_crash_step_leave(previous) }
    return body()
}
