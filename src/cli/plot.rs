//! A small PNG line chart of a training run, drawn with the `image` crate: training loss on the
//! left panel, test accuracy or BLEU on the right, one point per epoch (axes start at 0).

use image::{Rgb, RgbImage};

const W: u32 = 800;
const H: u32 = 360;
const PAD: u32 = 30;

fn line(img: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), color: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, color);
            }
        }
    }
}

/// Draws `values` in the panel starting at x = `left`, scaled to [0, max].
fn panel(img: &mut RgbImage, left: u32, values: &[f32], max: f32, color: Rgb<u8>) {
    let (w, h) = ((W / 2 - 2 * PAD) as f32, (H - 2 * PAD) as f32);
    let (x0, y0) = ((left + PAD) as f32, (H - PAD) as f32);
    let axis = Rgb([90, 90, 90]);
    line(img, (x0, y0), (x0 + w, y0), axis);
    line(img, (x0, y0), (x0, y0 - h), axis);
    for k in 1..=4 {
        let y = y0 - h * k as f32 / 4.0;
        line(img, (x0 - 4.0, y), (x0, y), axis);
    }
    let n = values.len().max(2) - 1;
    let point = |i: usize, v: f32| (x0 + w * i as f32 / n as f32, y0 - h * (v / max).clamp(0.0, 1.0));
    for i in 1..values.len() {
        line(img, point(i - 1, values[i - 1]), point(i, values[i]), color);
    }
    for (i, &v) in values.iter().enumerate() {
        let (x, y) = point(i, v);
        line(img, (x - 2.0, y), (x + 2.0, y), color);
    }
}

/// PNG bytes of the chart: loss (scaled to its maximum) and a metric (scaled to `metric_max`:
/// 1 for accuracy, 100 for BLEU).
pub fn training_png(losses: &[f32], metric: &[f32], metric_max: f32) -> Vec<u8> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let max_loss = losses.iter().copied().fold(1e-6, f32::max);
    panel(&mut img, 0, losses, max_loss, Rgb([200, 40, 40]));
    panel(&mut img, W / 2, metric, metric_max, Rgb([40, 90, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding an in-memory RGB image cannot fail.
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}
