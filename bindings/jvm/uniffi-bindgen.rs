//! uniffi-bindgen of the uniffi version the exports use: generates the Kotlin of the binding.
fn main() {
    uniffi::uniffi_bindgen_main()
}
