//! Tag-length-value, strictly: one-byte tags in ascending order, each at most once, lengths
//! within bounds, `0xFF` at the end and nothing after it (Tesla's metadata encoding, with a
//! two-byte length so one layout serves the envelope and the proof).

use crate::Fault;

pub(crate) const END: u8 = 0xFF;

#[derive(Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
    last: Option<u8>,
}

impl Writer {
    pub(crate) fn field(&mut self, tag: u8, value: &[u8]) -> &mut Self {
        debug_assert!(self.last.is_none_or(|l| l < tag) && tag != END);
        debug_assert!(value.len() <= u16::MAX as usize);
        self.out.push(tag);
        self.out
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.out.extend_from_slice(value);
        self.last = Some(tag);
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.push(END);
        out
    }
}

/// Reads fields in order; a caller asks for each tag it knows, in ascending order.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn peek_tag(&self) -> Result<u8, Fault> {
        self.rest
            .first()
            .copied()
            .ok_or(Fault::Malformed("no end marker"))
    }

    /// The value of `tag` if it is next, with its length within `len`.
    pub(crate) fn optional(
        &mut self,
        tag: u8,
        len: std::ops::RangeInclusive<usize>,
    ) -> Result<Option<&'a [u8]>, Fault> {
        if self.peek_tag()? != tag {
            return Ok(None);
        }
        let [_, hi, lo, rest @ ..] = self.rest else {
            return Err(Fault::Malformed("truncated field"));
        };
        let n = u16::from_be_bytes([*hi, *lo]) as usize;
        if !len.contains(&n) {
            return Err(Fault::Malformed("field length out of bounds"));
        }
        if rest.len() < n {
            return Err(Fault::Malformed("truncated field"));
        }
        let (value, rest) = rest.split_at(n);
        self.rest = rest;
        Ok(Some(value))
    }

    pub(crate) fn required(
        &mut self,
        tag: u8,
        len: std::ops::RangeInclusive<usize>,
    ) -> Result<&'a [u8], Fault> {
        self.optional(tag, len)?
            .ok_or(Fault::Malformed("missing, repeated or out-of-order field"))
    }

    /// Everything read: the next byte must be the end marker and the last one.
    pub(crate) fn end(self) -> Result<(), Fault> {
        match self.rest {
            [END] => Ok(()),
            [END, ..] => Err(Fault::Malformed("bytes after the end marker")),
            [] => Err(Fault::Malformed("no end marker")),
            _ => Err(Fault::Malformed("unknown, repeated or out-of-order field")),
        }
    }
}

pub(crate) fn exact<const N: usize>(value: &[u8]) -> [u8; N] {
    value.try_into().expect("length checked by the reader")
}
