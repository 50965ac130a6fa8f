//! Training in the page: the library's ViT recipe (the same code as `wgformer train vit`) on
//! the page's WebGPU adapter. The page fetches the data and the recipe, then calls `step` in a
//! loop, yielding to the browser between steps; every call returns the run's events as JSON.
//! Calls must not overlap (the page awaits each); one that does is refused, not run.

// A call holds the run across its awaits on purpose: calls never overlap (`with_run` refuses
// one that would), and the run must not change under a step in flight.
#![allow(clippy::await_holding_refcell_ref)]

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgformer::data::mnist::{self, ImageSet};
use wgformer::gpu::GpuOptions;
use wgformer::train::{Event, MemoryStorage, RunContext, VitData, VitRecipe, VitRun};
use wgformer::Gpu;

/// A training run owned by the page.
#[wasm_bindgen]
pub struct PageTrainer {
    run: Rc<RefCell<VitRun>>,
    /// The test images, for the page's "sample" button.
    samples: Rc<ImageSet>,
    adapter: String,
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn seconds() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// The images the page trains and evaluates on: the gzip'd IDX files it fetched, cut to the
/// first `train_images` and `test_images`.
fn page_data(files: [&[u8]; 4], train_images: usize, test_images: usize) -> wgformer::Result<VitData> {
    let name = |n: &str| Path::new(n).to_path_buf();
    let (ti, tl) = (name("train-images-idx3-ubyte.gz"), name("train-labels-idx1-ubyte.gz"));
    let (vi, vl) = (name("t10k-images-idx3-ubyte.gz"), name("t10k-labels-idx1-ubyte.gz"));
    let mut train = mnist::from_gz(files[0], files[1], (&ti, &tl))?;
    let mut test = mnist::from_gz(files[2], files[3], (&vi, &vl))?;
    train.truncate(train_images);
    test.truncate(test_images);
    Ok(VitData { train, test })
}

/// Starts a run of `recipe_json` (a `VitRecipe`) on the page's adapter, or, given
/// `checkpoint_zip` (a model this page downloaded), continues that one. Returns the trainer and
/// its first events through `on_events`.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub async fn start_training(
    train_images: Vec<u8>,
    train_labels: Vec<u8>,
    test_images: Vec<u8>,
    test_labels: Vec<u8>,
    recipe_json: String,
    use_train: usize,
    use_test: usize,
    checkpoint_zip: Option<Vec<u8>>,
) -> Result<PageTrainer, JsValue> {
    let files = [&train_images[..], &train_labels[..], &test_images[..], &test_labels[..]];
    let data = page_data(files, use_train, use_test).map_err(js_error)?;
    let samples = Rc::new(data.test.clone());
    // The library takes an `Arc<Gpu>` (shared by threads natively); a page has one thread.
    #[allow(clippy::arc_with_non_send_sync)]
    let gpu = Arc::new(Gpu::with_options_async(&GpuOptions::default()).await.map_err(js_error)?);
    let adapter = gpu.describe();
    let mut ignore = |_: &Event| {};
    let run = match checkpoint_zip {
        Some(zip) => {
            let files = wgformer::util::zip::read(&zip, "the chosen file").map_err(js_error)?;
            let ctx = RunContext::new(MemoryStorage::with_files(files), seconds);
            VitRun::resume(gpu, None, data, ctx, &mut ignore).map_err(js_error)?
        }
        None => {
            let recipe = VitRecipe::from_json(&recipe_json).map_err(js_error)?;
            let ctx = RunContext::new(MemoryStorage::default(), seconds);
            VitRun::start(gpu, &recipe, data, ctx, &mut ignore).map_err(js_error)?
        }
    };
    Ok(PageTrainer { run: Rc::new(RefCell::new(run)), samples, adapter })
}

/// Runs `f` on the run unless a call is already under way; resolves to its JSON.
fn with_run<F, Fut>(run: &Rc<RefCell<VitRun>>, f: F) -> js_sys::Promise
where
    F: FnOnce(Rc<RefCell<VitRun>>) -> Fut + 'static,
    Fut: std::future::Future<Output = wgformer::Result<JsValue>> + 'static,
{
    let run = run.clone();
    future_to_promise(async move {
        if run.try_borrow_mut().is_err() {
            return Err(js_error("the trainer is busy with another call"));
        }
        f(run).await.map_err(js_error)
    })
}

#[wasm_bindgen]
impl PageTrainer {
    /// The adapter the run trains on.
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// One training step (at the end of an epoch, also its evaluation and checkpoint in
    /// memory): resolves to the events, as a JSON array.
    pub fn step(&self) -> js_sys::Promise {
        with_run(&self.run, |run| async move {
            let mut events = Vec::new();
            let mut keep = |e: &Event| events.push(e.clone());
            run.borrow_mut().advance(&mut keep).await?;
            Ok(JsValue::from_str(&serde_json::to_string(&events).unwrap_or_default()))
        })
    }

    /// Accuracy on the page's test images, of the model as it is now.
    pub fn evaluate(&self) -> js_sys::Promise {
        with_run(&self.run, |run| async move { Ok(JsValue::from_f64(run.borrow_mut().evaluate().await? as f64)) })
    }

    /// Class probabilities of a PNG or JPEG: resolves to `{"names": [...], "probs": [...]}`; an
    /// upload that is not an image (or is too large) is an error saying so.
    pub fn classify(&self, bytes: Vec<u8>) -> js_sys::Promise {
        with_run(&self.run, |run| async move {
            let image = wgformer::models::vit_infer::decode_image(&bytes, Path::new("the image"))?;
            let mut run = run.borrow_mut();
            let probs = run.classify(&image).await?;
            let names = run.class_names();
            Ok(JsValue::from_str(&serde_json::json!({ "names": names, "probs": probs }).to_string()))
        })
    }

    /// The model as a zip of its Hugging Face directory (written to the run's checkpoint
    /// first): what `wgformer predict` and `eval` load and this page continues from.
    pub fn download(&self) -> js_sys::Promise {
        with_run(&self.run, |run| async move {
            let mut ignore = |_: &Event| {};
            let zip = run.borrow_mut().checkpoint_zip(&mut ignore).await?;
            Ok(js_sys::Uint8Array::from(&zip[..]).into())
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.run.try_borrow().map_or(0, |r| r.step())
    }

    /// The pixels (28 x 28, 0-255) of test image `i`, for the page to draw.
    pub fn sample(&self, i: usize) -> Vec<u8> {
        let n = self.samples.rows * self.samples.cols;
        let i = i % self.samples.len().max(1);
        self.samples.pixels.get(i * n..(i + 1) * n).map_or_else(Vec::new, <[u8]>::to_vec)
    }

    /// The class name of test image `i`.
    pub fn sample_label(&self, i: usize) -> String {
        let i = i % self.samples.len().max(1);
        self.samples.labels.get(i).map_or_else(String::new, |&l| mnist::CLASSES[l as usize].to_string())
    }
}
