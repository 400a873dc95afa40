/// The host side of `sluice_config_env*`: what config_new of one chain step may ask for (error
/// reporting at a node, target lookup, metric creation), and what it reported.
final class ConfigEnv {
    let file: String
    let step: TransformStep
    let stepNode: YAMLNode
    let chainName: String
    let targets: [String: TargetRef]
    private(set) var errors: [ConfigError] = []
    /// The transform's name, NUL-terminated, lent to the plugin during config_new.
    let transformNameCString: UnsafeMutableBufferPointer<UInt8>
    /// Chains this step sends to (for cycle detection).
    private(set) var resolvedChains: [String] = []

    init(file: String, step: TransformStep, stepNode: YAMLNode, chainName: String, targets: [String: TargetRef]) {
        self.file = file
        self.step = step
        self.stepNode = stepNode
        self.chainName = chainName
        self.targets = targets
        let bytes = Array(step.transformName.utf8) + [0]
        transformNameCString = .allocate(capacity: bytes.count)
        _ = transformNameCString.initialize(from: bytes)
    }

    deinit {
        transformNameCString.deallocate()
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ handle: OpaquePointer) -> ConfigEnv {
        Unmanaged<ConfigEnv>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    func error(at node: YAMLNode?, _ message: String) {
        let at = node ?? stepNode
        errors.append(ConfigError(file: file, line: at.line, column: at.column, message: "\(step.label): \(message)"))
    }

    func resolve(_ name: String) -> TargetRef? {
        guard let target = targets[name] else { return nil }
        if case .chain = target.kind { resolvedChains.append(name) }
        return target
    }
}
