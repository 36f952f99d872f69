//! What a bot received, measured: colours in a frame, tones in audio. Pure.

/// A decoded RGB frame.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    /// Bytes per row (rows may be padded).
    pub stride: usize,
    pub rgb: Vec<u8>,
}

impl VideoFrame {
    pub fn view(&self) -> FrameView<'_> {
        FrameView {
            width: self.width,
            height: self.height,
            stride: self.stride,
            rgb: &self.rgb,
        }
    }

    /// See `FrameView::mean_rgb`.
    pub fn mean_rgb(&self, x: i32, y: i32, half: i32) -> [u8; 3] {
        self.view().mean_rgb(x, y, half)
    }
}

/// A decoded RGB frame borrowed from its buffer, as a frame observer sees it.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    pub width: u32,
    pub height: u32,
    /// Bytes per row (rows may be padded).
    pub stride: usize,
    pub rgb: &'a [u8],
}

impl FrameView<'_> {
    /// Mean colour of the square of side `2 * half + 1` around (x, y),
    /// clipped to the frame.
    pub fn mean_rgb(&self, x: i32, y: i32, half: i32) -> [u8; 3] {
        let mut sum = [0u64; 3];
        let mut n = 0u64;
        for py in (y - half).max(0)..=(y + half).min(self.height as i32 - 1) {
            for px in (x - half).max(0)..=(x + half).min(self.width as i32 - 1) {
                let i = py as usize * self.stride + px as usize * 3;
                if let Some(p) = self.rgb.get(i..i + 3) {
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]);
                    }
                    n += 1;
                }
            }
        }
        if n == 0 {
            return [0, 0, 0];
        }
        sum.map(|s| (s / n) as u8)
    }

    /// Mean brightness (0-255) of the square of side `2 * half + 1` around (x, y).
    pub fn brightness(&self, x: i32, y: i32, half: i32) -> f64 {
        let [r, g, b] = self.mean_rgb(x, y, half);
        (f64::from(r) + f64::from(g) + f64::from(b)) / 3.0
    }
}

/// 0xRRGGBB as [r, g, b].
pub fn rgb_of(colour: u32) -> [u8; 3] {
    [(colour >> 16) as u8, (colour >> 8) as u8, colour as u8]
}

/// Whether every channel is within `tolerance` (video coding shifts solid
/// colours by a few units; distinct test colours differ by far more).
pub fn colour_close(actual: [u8; 3], expected: [u8; 3], tolerance: u8) -> bool {
    actual
        .iter()
        .zip(expected)
        .all(|(a, e)| a.abs_diff(e) <= tolerance)
}

/// Amplitude of the sinusoid at `hz` in `samples` (a full-scale sine is 1.0),
/// by a Hann-windowed Goertzel filter.
pub fn tone_amplitude(samples: &[f32], rate: u32, hz: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return 0.0;
    }
    let omega = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0;
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        window_sum += w;
        let s0 = f64::from(x) * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / window_sum
}

/// Root mean square of the samples.
pub fn rms(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / samples.len() as f64)
        .sqrt()
}

/// The frequency in [lo, hi] (in steps of `step` Hz) with the largest amplitude.
pub fn strongest_tone(samples: &[f32], rate: u32, lo: f64, hi: f64, step: f64) -> (f64, f64) {
    let mut best = (lo, 0.0);
    let mut f = lo;
    while f <= hi {
        let a = tone_amplitude(samples, rate, f);
        if a > best.1 {
            best = (f, a);
        }
        f += step;
    }
    best
}

/// When a level rises through `threshold`: the times (of `times`, one per
/// level) of the first level above it after one at or below it. A series
/// that starts above the threshold has no onset there: it may be mid-pulse.
pub fn onsets(times: &[f64], levels: &[f64], threshold: f64) -> Vec<f64> {
    times
        .iter()
        .zip(levels)
        .zip(levels.iter().skip(1).zip(times.iter().skip(1)))
        .filter(|((_, before), (after, _))| **before <= threshold && **after > threshold)
        .map(|(_, (_, at))| *at)
        .collect()
}

/// The loudness of audio in consecutive windows of `window` samples:
/// (start time in seconds, RMS), with `start` the time of the first sample.
pub fn loudness(samples: &[f32], rate: u32, start: f64, window: usize) -> Vec<(f64, f64)> {
    samples
        .chunks_exact(window.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let power = chunk.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
            (
                start + (i * window) as f64 / f64::from(rate),
                (power / chunk.len() as f64).sqrt(),
            )
        })
        .collect()
}

/// For each onset in `video`, the offset in seconds to the nearest onset in
/// `audio` (positive: the sound comes after the picture), if one lies within
/// `within` seconds.
pub fn sync_offsets(video: &[f64], audio: &[f64], within: f64) -> Vec<f64> {
    video
        .iter()
        .filter_map(|v| {
            audio
                .iter()
                .map(|a| a - v)
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
                .filter(|d| d.abs() <= within)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, amplitude: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                amplitude
                    * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin() as f32
            })
            .collect()
    }

    #[test]
    fn a_sine_measures_its_own_amplitude_and_nothing_elsewhere() {
        let s = sine(440.0, 0.3, 48000, 24000);
        assert!((tone_amplitude(&s, 48000, 440.0) - 0.3).abs() < 0.01);
        assert!(tone_amplitude(&s, 48000, 700.0) < 0.003);
        assert!((rms(&s) - 0.3 / 2f64.sqrt()).abs() < 0.005);
    }

    #[test]
    fn a_mix_of_two_tones_shows_both_and_not_a_third() {
        let a = sine(400.0, 0.3, 48000, 24000);
        let b = sine(1100.0, 0.3, 48000, 24000);
        let mix: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert!(tone_amplitude(&mix, 48000, 400.0) > 0.25);
        assert!(tone_amplitude(&mix, 48000, 1100.0) > 0.25);
        assert!(tone_amplitude(&mix, 48000, 700.0) < 0.005);
        let (f, _) = strongest_tone(&a, 48000, 100.0, 2000.0, 10.0);
        assert_eq!(f, 400.0);
    }

    #[test]
    fn mean_colour_reads_a_patch_and_clips_at_edges() {
        let (w, h) = (8u32, 4u32);
        let stride = 8 * 3;
        let mut rgb = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 4..w as usize {
                rgb[y * stride + x * 3] = 200;
            }
        }
        let frame = VideoFrame {
            width: w,
            height: h,
            stride,
            rgb,
        };
        assert_eq!(frame.mean_rgb(6, 2, 1), [200, 0, 0]);
        assert_eq!(frame.mean_rgb(1, 1, 1), [0, 0, 0]);
        // Clipped to x 2..=7, y 0..=3: columns 4..=7 of 2..=7 are red: 200 * 4 / 6.
        assert_eq!(frame.mean_rgb(7, 3, 5)[0], 133);
    }

    #[test]
    fn colours_compare_with_a_tolerance() {
        assert_eq!(rgb_of(0x12ab34), [0x12, 0xab, 0x34]);
        assert!(colour_close([250, 3, 10], [255, 0, 0], 16));
        assert!(!colour_close([128, 0, 0], [255, 0, 0], 16));
    }

    #[test]
    fn onsets_are_rises_through_the_threshold_not_a_start_above_it() {
        let times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let levels = [9.0, 1.0, 8.0, 9.0, 1.0, 1.0, 7.0];
        assert_eq!(onsets(&times, &levels, 5.0), vec![0.2, 0.6]);
        assert!(onsets(&times, &[1.0; 7], 5.0).is_empty());
    }

    #[test]
    fn loudness_finds_a_burst_in_silence() {
        let mut samples = vec![0.0f32; 4800];
        for s in &mut samples[2400..2880] {
            *s = 0.5;
        }
        let windows = loudness(&samples, 48_000, 1.0, 240);
        assert_eq!(windows.len(), 20);
        let times: Vec<f64> = windows.iter().map(|w| w.0).collect();
        let levels: Vec<f64> = windows.iter().map(|w| w.1).collect();
        assert_eq!(onsets(&times, &levels, 0.1), vec![1.05]);
    }

    #[test]
    fn sync_offsets_pair_each_picture_with_the_nearest_sound() {
        let offsets = sync_offsets(&[1.0, 2.0, 3.0], &[1.03, 1.98, 5.0], 0.5);
        assert_eq!(offsets.len(), 2, "the third has no sound near it");
        assert!((offsets[0] - 0.03).abs() < 1e-9 && (offsets[1] + 0.02).abs() < 1e-9);
    }
}
