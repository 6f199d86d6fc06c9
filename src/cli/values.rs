//! The CLI's enumerated values (`--bits`, `--method`, `--isa`): one parser each, listed by
//! `--help`, shared by every command.

use clap::ValueEnum;

/// `--bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BitsArg {
    W8a8,
    W6a6,
    W4a8,
    W4a4,
    /// W6A6 with the attention probabilities at 8 bits (long documents).
    W6a6p8,
    /// W4A4 with the attention probabilities at 8 bits (long documents).
    W4a4p8,
}

impl From<BitsArg> for osq::Bits {
    fn from(b: BitsArg) -> osq::Bits {
        match b {
            BitsArg::W8a8 => osq::Bits::W8A8,
            BitsArg::W6a6 => osq::Bits::W6A6,
            BitsArg::W4a8 => osq::Bits::W4A8,
            BitsArg::W4a4 => osq::Bits::W4A4,
            BitsArg::W6a6p8 => osq::Bits::W6A6P8,
            BitsArg::W4a4p8 => osq::Bits::W4A4P8,
        }
    }
}

/// `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Global min/max of each node (fast).
    Minmax,
    /// Mean over batches of the batch min/max.
    MinmaxMean,
    /// Histogram percentile.
    Percentile,
    /// MSE-optimal clipping per node.
    Omse,
    /// Outlier Suppression: Gamma Migration + Token-Wise Clipping.
    Os,
    /// OS+: channel-wise shifting and scaling + Token-Wise Clipping.
    #[value(name = "os+")]
    OsPlus,
}

impl From<MethodArg> for osq::Method {
    fn from(m: MethodArg) -> osq::Method {
        match m {
            MethodArg::Minmax => osq::Method::MinMax,
            MethodArg::MinmaxMean => osq::Method::MinMaxMean,
            MethodArg::Percentile => osq::Method::Percentile,
            MethodArg::Omse => osq::Method::Omse,
            MethodArg::Os => osq::Method::Os,
            MethodArg::OsPlus => osq::Method::OsPlus,
        }
    }
}

/// `--loss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// The task head's logits when the model has one, else hidden states.
    Auto,
    /// Every valid token's final hidden state.
    Hidden,
    /// The task head's logits (the OS reference's loss for fine-tuned models).
    Logits,
}

impl From<LossArg> for osq::Loss {
    fn from(l: LossArg) -> osq::Loss {
        match l {
            LossArg::Auto => osq::Loss::Auto,
            LossArg::Hidden => osq::Loss::Hidden,
            LossArg::Logits => osq::Loss::Logits,
        }
    }
}

/// `--isa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IsaArg {
    /// Every ISA this CPU has.
    All,
    Scalar,
    Avx2,
    Avx512vnni,
    AmxInt8,
    Neon,
    NeonDotprod,
}

impl IsaArg {
    /// The ISAs named (`All`: every available one); an unavailable one is an error.
    pub fn isas(self) -> anyhow::Result<Vec<osq::Isa>> {
        let one = match self {
            IsaArg::All => return Ok(osq::Isa::available()),
            IsaArg::Scalar => osq::Isa::Scalar,
            IsaArg::Avx2 => osq::Isa::Avx2,
            IsaArg::Avx512vnni => osq::Isa::Avx512Vnni,
            IsaArg::AmxInt8 => osq::Isa::AmxInt8,
            IsaArg::Neon => osq::Isa::Neon,
            IsaArg::NeonDotprod => osq::Isa::NeonDotprod,
        };
        one.require().map_err(|e| anyhow::anyhow!("--isa: {e}"))?;
        Ok(vec![one])
    }

    /// Exactly one ISA.
    pub fn one(self) -> anyhow::Result<osq::Isa> {
        match self {
            IsaArg::All => anyhow::bail!("--isa: name exactly one ISA"),
            _ => Ok(self.isas()?[0]),
        }
    }
}
