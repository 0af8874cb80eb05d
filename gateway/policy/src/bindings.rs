//! Host bindings generated from the one WIT tree of the repository (`wit/`), the same file the
//! plugin SDK generates its guest bindings from.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "snapgate:policy/policy@0.1.0",
});
