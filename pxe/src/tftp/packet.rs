//! TFTP packets (RFC 1350) with options (RFC 2347): parsing and encoding, no I/O.
//!
//! Parsing is total: every byte string yields a packet or a [`PacketError`], never a panic
//! (the fuzz target feeds it arbitrary input).

use std::fmt;

/// Longest file name accepted in a request.
pub const MAX_NAME: usize = 255;
/// Largest block size (RFC 2348).
pub const MAX_BLKSIZE: u16 = 65_464;
/// Smallest block size (RFC 2348).
pub const MIN_BLKSIZE: u16 = 8;

/// TFTP error codes (RFC 1350 section 5, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not defined, see the message.
    Undefined = 0,
    /// File not found.
    NotFound = 1,
    /// Access violation.
    AccessViolation = 2,
    /// Illegal TFTP operation.
    IllegalOperation = 4,
    /// Unknown transfer id.
    UnknownTid = 5,
    /// Option negotiation refused (RFC 2347).
    BadOption = 8,
}

/// A TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request.
    Rrq {
        /// Requested file.
        filename: &'a str,
        /// `octet` or `netascii` (lower-cased).
        mode: String,
        /// Options as (lower-cased name, value), in request order.
        options: Vec<(String, &'a str)>,
    },
    /// Write request (always refused: the server is read-only).
    Wrq,
    /// Data block.
    Data {
        /// Block number.
        block: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Acknowledgement.
    Ack {
        /// Block number.
        block: u16,
    },
    /// Error.
    Error {
        /// Code.
        code: u16,
        /// Message.
        message: &'a str,
    },
    /// Option acknowledgement.
    Oack {
        /// Options.
        options: Vec<(&'a str, &'a str)>,
    },
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than an opcode, or a field is cut off.
    Truncated,
    /// Unknown opcode.
    Opcode(u16),
    /// A string is not NUL-terminated UTF-8 or has bad characters.
    BadString,
    /// The file name is longer than [`MAX_NAME`].
    NameTooLong,
    /// The same option twice.
    DuplicateOption,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Truncated => f.write_str("truncated packet"),
            PacketError::Opcode(o) => write!(f, "unknown opcode {o}"),
            PacketError::BadString => f.write_str("malformed string field"),
            PacketError::NameTooLong => f.write_str("file name too long"),
            PacketError::DuplicateOption => f.write_str("option given twice"),
        }
    }
}

fn cstr<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a str, PacketError> {
    let rest = buf.get(*pos..).ok_or(PacketError::Truncated)?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(PacketError::Truncated)?;
    let s = std::str::from_utf8(&rest[..end]).map_err(|_| PacketError::BadString)?;
    *pos += end + 1;
    Ok(s)
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, PacketError> {
    match buf.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(PacketError::Truncated),
    }
}

/// Parses one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, PacketError> {
    let op = u16_at(buf, 0)?;
    match op {
        1 => {
            let mut pos = 2;
            let filename = cstr(buf, &mut pos)?;
            if filename.len() > MAX_NAME {
                return Err(PacketError::NameTooLong);
            }
            let mode = cstr(buf, &mut pos)?.to_ascii_lowercase();
            let mut options: Vec<(String, &str)> = Vec::new();
            while pos < buf.len() {
                let name = cstr(buf, &mut pos)?.to_ascii_lowercase();
                let value = cstr(buf, &mut pos)?;
                if options.iter().any(|(n, _)| *n == name) {
                    return Err(PacketError::DuplicateOption);
                }
                if options.len() >= 16 {
                    return Err(PacketError::BadString);
                }
                options.push((name, value));
            }
            Ok(Packet::Rrq {
                filename,
                mode,
                options,
            })
        }
        2 => Ok(Packet::Wrq),
        3 => Ok(Packet::Data {
            block: u16_at(buf, 2)?,
            data: &buf[4..],
        }),
        4 => Ok(Packet::Ack {
            block: u16_at(buf, 2)?,
        }),
        5 => {
            let code = u16_at(buf, 2)?;
            let mut pos = 4;
            let message = cstr(buf, &mut pos).unwrap_or("");
            Ok(Packet::Error { code, message })
        }
        6 => {
            let mut pos = 2;
            let mut options = Vec::new();
            while pos < buf.len() {
                let n = cstr(buf, &mut pos)?;
                let v = cstr(buf, &mut pos)?;
                options.push((n, v));
            }
            Ok(Packet::Oack { options })
        }
        other => Err(PacketError::Opcode(other)),
    }
}

/// Encodes a DATA packet header plus payload into `out`.
pub fn data(out: &mut Vec<u8>, block: u16, payload: &[u8]) {
    out.clear();
    data_append(out, block, payload);
}

/// Appends a DATA packet to `out` (packets of a window, back to back).
pub fn data_append(out: &mut Vec<u8>, block: u16, payload: &[u8]) {
    out.extend_from_slice(&3u16.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Encodes an ERROR packet.
pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&5u16.to_be_bytes());
    out.extend_from_slice(&(code as u16).to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

/// Encodes an OACK packet.
pub fn oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&6u16.to_be_bytes());
    for (n, v) in options {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_with_options() {
        let p = b"\x00\x01pxelinux.0\x00octet\x00blksize\x001432\x00TSIZE\x000\x00";
        match parse(p).unwrap() {
            Packet::Rrq {
                filename,
                mode,
                options,
            } => {
                assert_eq!(filename, "pxelinux.0");
                assert_eq!(mode, "octet");
                assert_eq!(
                    options,
                    vec![("blksize".to_string(), "1432"), ("tsize".to_string(), "0")]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        assert_eq!(parse(b""), Err(PacketError::Truncated));
        assert_eq!(parse(b"\x00"), Err(PacketError::Truncated));
        assert_eq!(parse(b"\x00\x01abc"), Err(PacketError::Truncated));
        assert_eq!(parse(b"\x00\x09"), Err(PacketError::Opcode(9)));
        assert_eq!(parse(b"\x00\x04\x00"), Err(PacketError::Truncated));
        assert_eq!(
            parse(b"\x00\x01a\x00octet\x00x\x001\x00x\x002\x00"),
            Err(PacketError::DuplicateOption)
        );
        assert_eq!(
            parse(b"\x00\x01\xff\x00octet\x00"),
            Err(PacketError::BadString)
        );
        let mut long = b"\x00\x01".to_vec();
        long.extend(std::iter::repeat_n(b'a', 300));
        long.extend(b"\x00octet\x00");
        assert_eq!(parse(&long), Err(PacketError::NameTooLong));
    }

    #[test]
    fn encode_round_trip() {
        let mut out = Vec::new();
        data(&mut out, 7, b"hello");
        assert_eq!(
            parse(&out).unwrap(),
            Packet::Data {
                block: 7,
                data: b"hello"
            }
        );
        let e = error(ErrorCode::NotFound, "nope");
        assert_eq!(
            parse(&e).unwrap(),
            Packet::Error {
                code: 1,
                message: "nope"
            }
        );
        let o = oack(&[("blksize", "1432".into())]);
        assert_eq!(
            parse(&o).unwrap(),
            Packet::Oack {
                options: vec![("blksize", "1432")]
            }
        );
    }
}
