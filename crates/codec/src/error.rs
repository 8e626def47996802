//! The crate's error type and its mapping onto [`kuai_core::ErrorKind`].

use kuai_core::ErrorKind;

/// What went wrong while encoding, decoding or framing.
///
/// Converts into [`kuai_core::Error`]: malformed or oversized input becomes
/// [`ErrorKind::Corrupt`], a value that cannot be encoded becomes
/// [`ErrorKind::InvalidInput`], and I/O errors keep their own mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input is not a valid encoding (truncated, bit-flipped, trailing
    /// bytes, nested too deeply, wrong type, invalid UTF-8, …).
    #[error("{codec}: malformed input: {reason}")]
    Malformed {
        /// The codec that rejected the input.
        codec: &'static str,
        /// Why, in the codec's words.
        reason: String,
    },
    /// A length in the input (or the input itself) exceeds a configured limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (`"frame"`, `"input"`, `"decompressed payload"`).
        what: &'static str,
        /// The size the input asked for.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The value cannot be encoded (e.g. a map with non-string keys in JSON,
    /// or a frame larger than the configured maximum).
    #[error("{codec}: cannot encode: {reason}")]
    Encode {
        /// The codec that refused.
        codec: &'static str,
        /// Why.
        reason: String,
    },
    /// An I/O error from a blocking reader or writer.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// A [`CodecError::Malformed`] from any displayable reason.
    pub(crate) fn malformed(codec: &'static str, reason: impl std::fmt::Display) -> Self {
        CodecError::Malformed {
            codec,
            reason: reason.to_string(),
        }
    }

    /// A [`CodecError::Encode`] from any displayable reason.
    pub(crate) fn encode(codec: &'static str, reason: impl std::fmt::Display) -> Self {
        CodecError::Encode {
            codec,
            reason: reason.to_string(),
        }
    }

    /// The [`ErrorKind`] this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CodecError::Malformed { .. } | CodecError::TooLarge { .. } => ErrorKind::Corrupt,
            CodecError::Encode { .. } => ErrorKind::InvalidInput,
            CodecError::Io(e) => kuai_core::Error::from(std::io::Error::from(e.kind())).kind(),
        }
    }
}

impl From<CodecError> for kuai_core::Error {
    fn from(err: CodecError) -> Self {
        match err {
            CodecError::Io(io) => kuai_core::Error::from(io),
            other => {
                let kind = other.kind();
                let message = other.to_string();
                kuai_core::Error::with_source(kind, message, other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_as_documented() {
        let cases = [
            (CodecError::malformed("json", "eof"), ErrorKind::Corrupt),
            (
                CodecError::TooLarge {
                    what: "frame",
                    len: 10,
                    limit: 5,
                },
                ErrorKind::Corrupt,
            ),
            (CodecError::encode("json", "key"), ErrorKind::InvalidInput),
            (
                CodecError::Io(std::io::ErrorKind::UnexpectedEof.into()),
                ErrorKind::Corrupt,
            ),
            (
                CodecError::Io(std::io::ErrorKind::BrokenPipe.into()),
                ErrorKind::Closed,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.kind(), want, "{err}");
            assert_eq!(kuai_core::Error::from(err).kind(), want);
        }
    }

    #[test]
    fn message_names_codec_and_limit() {
        let e = kuai_core::Error::from(CodecError::TooLarge {
            what: "frame",
            len: 10,
            limit: 5,
        });
        assert!(e.message().contains("limit of 5"), "{e}");
    }
}
