//! A plugin built against the frozen `snapgate:policy@0.1.0` (straight on wit-bindgen: the SDK
//! follows the current version). It allows, with a warning naming the version, the operation
//! and the instance, so a test sees it ran; with config `{"deny": true}` it denies with code
//! `v0_1_denied`.
wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "snapgate:policy/policy@0.1.0",
});

struct ContractV01;

impl Guest for ContractV01 {
    fn evaluate(req: Request) -> Decision {
        let seen = format!("v0.1 saw {:?} of {}", req.operation, req.instance.name);
        log(LogLevel::Info, &seen);
        if req.config.contains("\"deny\":true") {
            return Decision::Deny(Denial {
                code: "v0_1_denied".into(),
                reason: seen,
                warnings: Vec::new(),
            });
        }
        Decision::Allow(vec![seen])
    }
}

export!(ContractV01);
