//! Splitting an SFU's CPU into what each forwarded packet costs and what
//! each participant costs whatever it is sent (its receive path: ICE,
//! DTLS, jitter buffers, RTCP timers). Pure.
//!
//! One run's CPU per packet mixes the two, so it falls as rooms grow (the
//! per-participant part is spread over more packets) and cannot be set
//! beside another server's figure on another load. Over runs of several
//! sizes the two parts separate: a run's CPU is modelled as
//! `a * packets per second + b * participants` and `a` and `b` are fitted
//! by least squares (no constant: an empty room costs nothing).

use serde::Serialize;

/// One run as the fit sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostSample {
    /// Server CPU over the window, in cores (1.0 = one core busy).
    pub cores: f64,
    /// Packets the server sent per second.
    pub packets_per_second: f64,
    pub participants: f64,
}

/// The fitted costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostFit {
    /// Server CPU per packet sent, microseconds.
    pub us_per_packet_out: f64,
    /// Server CPU per participant, milliseconds of CPU per second.
    pub ms_per_second_per_participant: f64,
    /// Runs the fit was made from.
    pub runs: usize,
    /// Largest difference between a run's CPU and the fit's, % of a core.
    pub worst_residual_percent: f64,
}

/// The least-squares fit of `samples`; None with fewer than two runs or
/// runs whose packets grow in proportion to participants (nothing then
/// tells the two costs apart).
pub fn fit_costs(samples: &[CostSample]) -> Option<CostFit> {
    if samples.len() < 2 {
        return None;
    }
    let (mut pp, mut pn, mut nn, mut pc, mut nc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for s in samples {
        pp += s.packets_per_second * s.packets_per_second;
        pn += s.packets_per_second * s.participants;
        nn += s.participants * s.participants;
        pc += s.packets_per_second * s.cores;
        nc += s.participants * s.cores;
    }
    let det = pp * nn - pn * pn;
    // Relative to the terms it is made of, so the test does not depend on
    // the units.
    if det.abs() <= 1e-9 * pp * nn {
        return None;
    }
    let per_packet = (pc * nn - nc * pn) / det;
    let per_participant = (pp * nc - pn * pc) / det;
    let worst = samples
        .iter()
        .map(|s| {
            (s.cores - per_packet * s.packets_per_second - per_participant * s.participants).abs()
        })
        .fold(0.0, f64::max);
    Some(CostFit {
        us_per_packet_out: per_packet * 1e6,
        ms_per_second_per_participant: per_participant * 1e3,
        runs: samples.len(),
        worst_residual_percent: worst * 100.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs made from known costs: 20 µs a packet, 5 ms a second each.
    fn sample(participants: f64, packets_per_second: f64) -> CostSample {
        CostSample {
            cores: 20e-6 * packets_per_second + 5e-3 * participants,
            packets_per_second,
            participants,
        }
    }

    #[test]
    fn known_costs_are_found_again() {
        let fit = fit_costs(&[
            sample(4.0, 1300.0),
            sample(8.0, 6200.0),
            sample(12.0, 14500.0),
        ])
        .unwrap();
        assert!((fit.us_per_packet_out - 20.0).abs() < 1e-6, "{fit:?}");
        assert!(
            (fit.ms_per_second_per_participant - 5.0).abs() < 1e-6,
            "{fit:?}"
        );
        assert_eq!(fit.runs, 3);
        assert!(fit.worst_residual_percent < 1e-6);
    }

    #[test]
    fn noise_shows_in_the_residual() {
        let mut noisy = sample(8.0, 6200.0);
        noisy.cores += 0.02;
        let fit = fit_costs(&[sample(4.0, 1300.0), noisy, sample(12.0, 14500.0)]).unwrap();
        assert!(fit.worst_residual_percent > 0.5, "{fit:?}");
        assert!((fit.us_per_packet_out - 20.0).abs() < 3.0, "{fit:?}");
    }

    #[test]
    fn one_run_or_runs_that_cannot_be_told_apart_give_no_fit() {
        assert_eq!(fit_costs(&[sample(8.0, 6200.0)]), None);
        // Packets in proportion to participants: any split fits.
        assert_eq!(fit_costs(&[sample(4.0, 400.0), sample(8.0, 800.0)]), None);
        assert_eq!(fit_costs(&[]), None);
    }
}
