//! Classify image files with a ViT checkpoint directory (from `wgformer train vit`, or any
//! Hugging Face ViTForImageClassification saved with safetensors).
//! `cargo run --release --example classify -- runs/vit image.png`

use wgformer::models::Vit;
use wgformer::Gpu;

fn main() -> wgformer::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, images)) = args.split_first() else {
        eprintln!("usage: classify CHECKPOINT_DIR IMAGE...");
        std::process::exit(2);
    };
    let gpu = Gpu::from_env()?;
    let vit = Vit::load(&gpu, std::path::Path::new(dir), 1)?;
    for path in images {
        let image = image::open(path).map_err(|e| wgformer::Error::Config(format!("{path}: {e}")))?;
        let probs = vit.classify(&gpu, &image)?;
        let best = (0..probs.len()).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap_or(0);
        println!("{path}: {} ({:.1}%)", vit.config.label_name(best), 100.0 * probs[best]);
    }
    Ok(())
}
