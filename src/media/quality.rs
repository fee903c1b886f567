//! Estimated call quality: the ITU-T G.107 E-model (06/2015) and its
//! R-factor to MOS mapping.
//!
//! Pure functions, no state: the caller measures the one-way delay and the
//! packet loss (from RTCP, the jitter buffer or a loopback measurement) and
//! names the codec's equipment impairment; [`mos`] turns that into an
//! estimated mean opinion score.
//!
//! G.107 §3: R = Ro − Is − Id − Ie,eff + A. Every parameter this module does
//! not take as input keeps its G.107 Table 3 default (send and receive
//! loudness ratings, room noise, sidetone, talker echo loss 65 dB, ...), so
//! that with no delay, no loss and a transparent codec R ≈ 93.2, the
//! well-known default of G.107 §7.
//!
//! Delay enters three times, the way it does for a VoIP path where the
//! echo is well controlled: Ta (absolute one-way delay) = T (talker echo
//! path) = the one-way delay, Tr (listener echo round trip) = twice that.

/// Equipment impairment of a codec (G.107 §3.6): its intrinsic impairment
/// Ie and its packet-loss robustness Bpl.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Ie: impairment of the codec without loss (0 for G.711).
    pub ie: f64,
    /// Bpl: packet-loss robustness factor; higher means loss hurts less.
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet-loss concealment (G.711 Appendix I): Ie = 0,
    /// Bpl = 25.1 (ITU-T G.113 Appendix I, Table I.3, random loss).
    pub const G711_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };

    /// G.711 without concealment (lost frames are silence): Ie = 0,
    /// Bpl = 4.3 (ITU-T G.113 Appendix I, Table I.3).
    pub const G711_NO_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };

    /// Opus (RFC 6716) with its own concealment, at the bitrates sipline
    /// uses (about 32–64 kbit/s). G.113 lists no values for Opus; these are
    /// assumptions: Ie = 0 (the narrowband E-model cannot rate a wideband
    /// codec above G.711, so it is taken as transparent on that scale) and
    /// Bpl = 30 (somewhat more robust than G.711 with PLC, for Opus's
    /// concealment; loss recovered by in-band FEC should not be counted as
    /// loss at all).
    pub const OPUS_ASSUMED: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 30.0 };

    /// The impairment for a codec by its `a=rtpmap` encoding name
    /// (case-insensitive); `plc` says whether lost frames are concealed.
    /// Unknown names get G.711's values.
    pub fn for_encoding(name: &str, plc: bool) -> CodecImpairment {
        if name.eq_ignore_ascii_case("opus") {
            CodecImpairment::OPUS_ASSUMED
        } else if plc {
            CodecImpairment::G711_PLC
        } else {
            CodecImpairment::G711_NO_PLC
        }
    }
}

/// What the E-model needs to know about a call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInputs {
    /// The codec's Ie and Bpl.
    pub codec: CodecImpairment,
    /// Mouth-to-ear delay in one direction, in milliseconds: network
    /// (round-trip time / 2) plus jitter buffer plus packetization and
    /// codec look-ahead (see [`one_way_delay_ms`]).
    pub one_way_delay_ms: f64,
    /// Ppl: frames lost and not recovered, in percent (0–100).
    pub packet_loss_percent: f64,
    /// BurstR (G.107 §3.6): 1 for random loss, above 1 for bursty loss.
    pub burst_ratio: f64,
}

impl QualityInputs {
    /// Inputs for `codec` with a one-way delay and random loss.
    pub fn new(codec: CodecImpairment, one_way_delay_ms: f64, packet_loss_percent: f64) -> Self {
        QualityInputs {
            codec,
            one_way_delay_ms,
            packet_loss_percent,
            burst_ratio: 1.0,
        }
    }
}

/// One-way mouth-to-ear delay from what a call measures: half the RTCP
/// round-trip time, the jitter buffer's playout delay and one packet of
/// audio (the sender waits for a full frame before sending it).
pub fn one_way_delay_ms(rtt_ms: f64, jitter_buffer_ms: f64, packetization_ms: f64) -> f64 {
    rtt_ms.max(0.0) / 2.0 + jitter_buffer_ms.max(0.0) + packetization_ms.max(0.0)
}

/// The estimated MOS (1.0–4.5) of a call, from the E-model's R-factor
/// (G.107 Annex B).
pub fn mos(inputs: &QualityInputs) -> f64 {
    mos_from_r(r_factor(inputs))
}

/// G.107 Annex B, formula B-4: MOS_CQE from the rating factor R.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6
    }
}

/// The transmission rating factor R (G.107 §3, formula 3-1), A = 0.
pub fn r_factor(inputs: &QualityInputs) -> f64 {
    // NaN counts as no delay; absurd delays are capped (R is far below 0
    // long before a minute).
    let ta = match inputs.one_way_delay_ms {
        d if d.is_nan() => 0.0,
        d => d.clamp(0.0, 60_000.0),
    };
    let base = Defaults::G107;
    let no = base.noise_sum();
    let ro = 15.0 - 1.5 * (base.slr + no);
    let is = base.simultaneous_impairment(ro, no, ta);
    let id = base.idte(no, ta) + base.idle(ro, 2.0 * ta) + idd(ta);
    ro - is - id - ie_eff(inputs)
}

fn finite_or(x: f64, fallback: f64) -> f64 {
    if x.is_finite() { x } else { fallback }
}

/// G.107 §3.6, formula 3-33: Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl).
pub fn ie_eff(inputs: &QualityInputs) -> f64 {
    let ppl = finite_or(inputs.packet_loss_percent, 0.0).clamp(0.0, 100.0);
    let burst = finite_or(inputs.burst_ratio, 1.0).max(1.0);
    let CodecImpairment { ie, bpl } = inputs.codec;
    if ppl == 0.0 {
        return ie;
    }
    ie + (95.0 - ie) * ppl / (ppl / burst + bpl.max(f64::MIN_POSITIVE))
}

/// G.107 §3.4, formulas 3-27 and 3-28: the impairment of a long absolute
/// delay Ta (ms), with the default mT = 100 ms and sT = 1.
pub fn idd(ta_ms: f64) -> f64 {
    const MT: f64 = 100.0;
    const ST: f64 = 1.0;
    if ta_ms <= MT {
        return 0.0;
    }
    let x = (ta_ms / MT).log10() / 2f64.log10();
    let p = 6.0 * ST;
    25.0 * ((1.0 + x.powf(p)).powf(1.0 / p) - 3.0 * (1.0 + (x / 3.0).powf(p)).powf(1.0 / p) + 2.0)
}

/// The G.107 Table 3 default values of the parameters we do not measure.
struct Defaults {
    /// Send and receive loudness ratings (dB).
    slr: f64,
    rlr: f64,
    /// Sidetone masking and listener sidetone ratings (dB).
    stmr: f64,
    lstr: f64,
    /// D-value of the telephone, send and receive side.
    ds: f64,
    /// Talker echo loudness rating and weighted echo path loss (dB).
    telr: f64,
    wepl: f64,
    /// Quantizing distortion units.
    qdu: f64,
    /// Circuit noise (dBm0p), noise floor at the receive side (dBmp).
    nc: f64,
    nfor: f64,
    /// Room noise at the send and receive side (dB(A)).
    ps: f64,
    pr: f64,
}

impl Defaults {
    const G107: Defaults = Defaults {
        slr: 8.0,
        rlr: 2.0,
        stmr: 15.0,
        lstr: 18.0,
        ds: 3.0,
        telr: 65.0,
        wepl: 110.0,
        qdu: 1.0,
        nc: -70.0,
        nfor: -64.0,
        ps: 35.0,
        pr: 35.0,
    };

    fn olr(&self) -> f64 {
        self.slr + self.rlr
    }

    /// Formulas 3-3 to 3-8: No, the power sum of all noise sources.
    fn noise_sum(&self) -> f64 {
        let nos = self.ps - self.slr - self.ds - 100.0
            + 0.004 * (self.ps - self.olr() - self.ds - 14.0).powi(2);
        let pre = self.pr + 10.0 * (1.0 + 10f64.powf((10.0 - self.lstr) / 10.0)).log10();
        let nor = self.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
        let nfo = self.nfor + self.rlr;
        let p = |x: f64| 10f64.powf(x / 10.0);
        10.0 * (p(self.nc) + p(nos) + p(nor) + p(nfo)).log10()
    }

    /// Formulas 3-9 to 3-16: Is = Iolr + Ist + Iq, with T = Ta.
    fn simultaneous_impairment(&self, ro: f64, no: f64, t: f64) -> f64 {
        let xolr = self.olr() + 0.2 * (64.0 + no - self.rlr);
        let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
        let stmro = -10.0
            * (10f64.powf(-self.stmr / 10.0) + (-t / 4.0).exp() * 10f64.powf(-self.telr / 10.0))
                .log10();
        let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
            - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
            - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
            + 29.0;
        let q = 37.0 - 15.0 * self.qdu.log10();
        let g = 1.07 + 0.258 * q + 0.0602 * q * q;
        let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
        let z = 46.0 / 30.0 - g / 40.0;
        let iq = 15.0 * (1.0 + 10f64.powf(y) + 10f64.powf(z)).log10();
        iolr + ist + iq
    }

    /// Formulas 3-17 to 3-21: talker echo impairment Idte for a mean
    /// one-way echo path delay T (ms).
    fn idte(&self, no: f64, t: f64) -> f64 {
        let roe = -1.5 * (no - self.rlr);
        let terv = self.telr - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10()
            + 6.0 * (-0.3 * t * t).exp();
        let re = 80.0 + 2.5 * (terv - 14.0);
        let d = roe - re;
        (d / 2.0 + (d * d / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp())
    }

    /// Formulas 3-25 and 3-26: listener echo impairment Idle for the
    /// round-trip delay Tr (ms).
    fn idle(&self, ro: f64, tr: f64) -> f64 {
        let rle = 10.5 * (self.wepl + 7.0) * (tr + 1.0).powf(-0.25);
        let d = ro - rle;
        d / 2.0 + (d * d / 4.0 + 169.0).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn inputs(codec: CodecImpairment, delay: f64, loss: f64) -> QualityInputs {
        QualityInputs::new(codec, delay, loss)
    }

    #[test]
    fn g107_defaults_give_r_93_2_and_mos_4_41() {
        let r = r_factor(&inputs(CodecImpairment::G711_PLC, 0.0, 0.0));
        assert!(close(r, 93.2, 0.05), "R = {r}");
        let m = mos(&inputs(CodecImpairment::G711_PLC, 0.0, 0.0));
        assert!(close(m, 4.41, 0.005), "MOS = {m}");
    }

    #[test]
    fn annex_b_r_to_mos_reference_points() {
        // G.107 Annex B formula B-4 at the user-satisfaction thresholds of
        // Table B.1 (R 90, 80, 70, 60, 50).
        for (r, want) in [
            (93.2, 4.409),
            (90.0, 4.339),
            (80.0, 4.024),
            (70.0, 3.597),
            (60.0, 3.1),
            (50.0, 2.575),
        ] {
            assert!(
                close(mos_from_r(r), want, 0.001),
                "R {r}: {}",
                mos_from_r(r)
            );
        }
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
    }

    #[test]
    fn idd_is_zero_up_to_100_ms_then_follows_formula_3_28() {
        assert_eq!(idd(0.0), 0.0);
        assert_eq!(idd(100.0), 0.0);
        // X = 1: 25·(2^(1/6) − 3·(1 + 3^-6)^(1/6) + 2).
        let want =
            25.0 * (2f64.powf(1.0 / 6.0) - 3.0 * (1.0 + 3f64.powi(-6)).powf(1.0 / 6.0) + 2.0);
        assert!(close(idd(200.0), want, 1e-9));
        assert!(close(idd(200.0), 3.04, 0.01), "{}", idd(200.0));
        // X = 2 (400 ms): the impairment grows steeply past 200 ms.
        assert!(idd(400.0) > 15.0 && idd(400.0) < 25.0, "{}", idd(400.0));
        assert!(idd(150.0) < idd(200.0) && idd(200.0) < idd(300.0));
    }

    #[test]
    fn ie_eff_follows_formula_3_33() {
        // G.711 with PLC, 2 % random loss: 95·2/(2 + 25.1).
        let q = inputs(CodecImpairment::G711_PLC, 0.0, 2.0);
        assert!(close(ie_eff(&q), 95.0 * 2.0 / 27.1, 1e-9));
        // Without PLC the same loss hurts much more.
        let q = inputs(CodecImpairment::G711_NO_PLC, 0.0, 2.0);
        assert!(close(ie_eff(&q), 95.0 * 2.0 / 6.3, 1e-9));
        // Bursty loss (BurstR 2) hurts more than random loss.
        let mut bursty = inputs(CodecImpairment::G711_PLC, 0.0, 5.0);
        let random = ie_eff(&bursty);
        bursty.burst_ratio = 2.0;
        assert!(ie_eff(&bursty) > random);
        // Total loss: Ie,eff reaches 95 − (95 − Ie)·Bpl/(100 + Bpl) at most.
        let all = inputs(
            CodecImpairment {
                ie: 10.0,
                bpl: 20.0,
            },
            0.0,
            100.0,
        );
        assert!(close(ie_eff(&all), 10.0 + 85.0 * 100.0 / 120.0, 1e-9));
    }

    #[test]
    fn mos_falls_with_loss_and_with_delay() {
        let codec = CodecImpairment::G711_PLC;
        let clean = mos(&inputs(codec, 50.0, 0.0));
        let lossy = mos(&inputs(codec, 50.0, 5.0));
        let slow = mos(&inputs(codec, 400.0, 0.0));
        assert!(clean > 4.3, "{clean}");
        assert!(lossy < clean - 0.3, "{lossy}");
        assert!(slow < clean - 0.5, "{slow}");
        // 5 % random loss with G.711 PLC: R ≈ 93.2 − 15.8 → MOS ≈ 3.9.
        assert!(close(lossy, 3.9, 0.1), "{lossy}");
        // Echo impairments at moderate delay are small with TELR 65 dB.
        let r150 = r_factor(&inputs(codec, 150.0, 0.0));
        assert!(r150 > 85.0 && r150 < 93.2, "{r150}");
    }

    #[test]
    fn bad_inputs_give_a_number_not_a_panic() {
        let codec = CodecImpairment::G711_PLC;
        for (d, l) in [(f64::NAN, 0.0), (-10.0, -3.0), (f64::INFINITY, 500.0)] {
            let m = mos(&inputs(codec, d, l));
            assert!((1.0..=4.5).contains(&m), "{d} {l}: {m}");
        }
    }

    #[test]
    fn codec_lookup_by_encoding_name() {
        assert_eq!(
            CodecImpairment::for_encoding("opus", true),
            CodecImpairment::OPUS_ASSUMED
        );
        assert_eq!(
            CodecImpairment::for_encoding("PCMU", true),
            CodecImpairment::G711_PLC
        );
        assert_eq!(
            CodecImpairment::for_encoding("PCMA", false),
            CodecImpairment::G711_NO_PLC
        );
    }

    #[test]
    fn one_way_delay_adds_half_rtt_buffer_and_packetization() {
        assert_eq!(one_way_delay_ms(10.0, 60.0, 20.0), 85.0);
        assert_eq!(one_way_delay_ms(-1.0, 60.0, 20.0), 80.0);
    }
}
