//! Percentiles and other summaries of measured samples. Pure.

use serde::Serialize;

/// p50 / p95 / max of a set of samples, with how many there were.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    pub samples: usize,
}

/// Nearest-rank percentiles; None for no samples.
pub fn percentiles(samples: &[f64]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[index.clamp(1, sorted.len()) - 1]
    };
    Some(Percentiles {
        p50: rank(50.0),
        p95: rank(95.0),
        max: sorted[sorted.len() - 1],
        samples: sorted.len(),
    })
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&samples).unwrap();
        assert_eq!((p.p50, p.p95, p.max, p.samples), (50.0, 95.0, 100.0, 100));
        let p = percentiles(&[7.0]).unwrap();
        assert_eq!((p.p50, p.p95, p.max), (7.0, 7.0, 7.0));
        let p = percentiles(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((p.p50, p.p95, p.max), (2.0, 3.0, 3.0));
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn means() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
    }
}
