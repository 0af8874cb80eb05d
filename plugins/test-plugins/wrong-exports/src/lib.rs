//! A component built against another world: `evaluate(string) -> bool`. The host must refuse
//! it at load with an error naming the plugin.
wit_bindgen::generate!({ path: "wit", world: "wrong" });

struct Wrong;

impl Guest for Wrong {
    fn evaluate(input: String) -> bool {
        input.is_empty()
    }
}

export!(Wrong);
