//! Translation in the page: a translation checkpoint the user picks (its files, or a zip of its
//! directory) loaded into the library's `Translator`, decoding on the page's WebGPU adapter
//! without blocking.

use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgformer::gpu::GpuOptions;
use wgformer::models::transformer_decode::Search;
use wgformer::models::translator::Translator;
use wgformer::Gpu;

/// At most this many lines are translated per call (the page's text box).
const MAX_LINES: usize = 32;

/// A translation model loaded by the page.
#[wasm_bindgen]
pub struct PageTranslator {
    translator: Rc<Translator>,
    gpu: Rc<Gpu>,
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Loads a translation checkpoint from the files the user picked (`names[i]`, `files[i]` a
/// Uint8Array): config.json, tokenizer.json and model.safetensors, or one zip holding them.
#[wasm_bindgen]
pub async fn load_translator(names: Vec<String>, files: js_sys::Array) -> Result<PageTranslator, JsValue> {
    let mut picked: Vec<(String, Vec<u8>)> =
        names.into_iter().zip(files.iter()).map(|(n, f)| (n, js_sys::Uint8Array::new(&f).to_vec())).collect();
    if let [(name, bytes)] = &picked[..] {
        if name.ends_with(".zip") {
            picked = wgformer::util::zip::read(bytes, name).map_err(js_error)?;
        }
    }
    let translator = Translator::from_files(&picked, "the chosen files").map_err(js_error)?;
    let gpu = Gpu::with_options_async(&GpuOptions::default()).await.map_err(js_error)?;
    Ok(PageTranslator { translator: Rc::new(translator), gpu: Rc::new(gpu) })
}

#[wasm_bindgen]
impl PageTranslator {
    /// Translates each line of `text` (beam 4, as the paper): resolves to
    /// `{"lines": [...], "note": "..."}`.
    pub fn translate(&self, text: String) -> js_sys::Promise {
        let (translator, gpu) = (self.translator.clone(), self.gpu.clone());
        future_to_promise(async move {
            let input = wgformer::text::input::lines(text.as_bytes());
            let lines: Vec<&str> = input.lines.iter().take(MAX_LINES).map(String::as_str).collect();
            let out = translator.translate_async(&gpu, &lines, Search::PAPER).await.map_err(js_error)?;
            let mut notes = Vec::new();
            if input.lines.len() > MAX_LINES {
                notes.push(format!("translated the first {MAX_LINES} lines"));
            }
            if input.cut > 0 || !out.truncated.is_empty() {
                notes.push("lines over the model's length were cut".to_string());
            }
            if out.unknown_chars > 0 {
                notes.push(format!("{} characters unknown to the tokenizer were read as <unk>", out.unknown_chars));
            }
            let json = serde_json::json!({ "lines": out.lines, "note": notes.join("; ") });
            Ok(JsValue::from_str(&json.to_string()))
        })
    }
}
