//! A small marshaller and reader for the values the bus itself produces and
//! consumes (driver replies, driver arguments, header fields, match-rule
//! argN lookups). Forwarded messages never go through here.
//!
//! Alignment is computed from the start of the buffer, which is always the
//! start of a message or of a body (both 8-aligned in a message).

use super::{Endian, WireError};

/// Builds marshalled data in little-endian byte order.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

/// Marks an open array; pass it back to [`Writer::end_array`].
#[derive(Debug)]
#[must_use]
pub struct ArrayMark {
    len_pos: usize,
    start: usize,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }
    /// Pads with zero bytes to a multiple of `n`.
    pub fn align(&mut self, n: usize) {
        let _ = n;
        todo!()
    }
    /// `y`
    pub fn u8(&mut self, v: u8) {
        let _ = v;
        todo!()
    }
    /// `b`
    pub fn bool(&mut self, v: bool) {
        let _ = v;
        todo!()
    }
    /// `u`
    pub fn u32(&mut self, v: u32) {
        let _ = v;
        todo!()
    }
    /// `i`
    pub fn i32(&mut self, v: i32) {
        let _ = v;
        todo!()
    }
    /// `t`
    pub fn u64(&mut self, v: u64) {
        let _ = v;
        todo!()
    }
    /// `s`
    pub fn string(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    /// `o`
    pub fn object_path(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    /// `g`
    pub fn signature(&mut self, v: &str) {
        let _ = v;
        todo!()
    }
    /// Starts a variant: writes the signature `sig`; the caller then writes one value of that type.
    pub fn variant(&mut self, sig: &str) {
        let _ = sig;
        todo!()
    }
    /// Starts an array whose elements have alignment `elem_align`
    /// (8 for structs and dict entries).
    pub fn begin_array(&mut self, elem_align: usize) -> ArrayMark {
        let _ = elem_align;
        todo!()
    }
    /// Closes an array, patching its length.
    pub fn end_array(&mut self, mark: ArrayMark) {
        let _ = mark;
        todo!()
    }
    /// Starts a struct or dict entry (aligns to 8).
    pub fn begin_struct(&mut self) {
        self.align(8)
    }
    /// Appends raw bytes (caller ensures alignment).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes)
    }
    /// Current length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Patches a u32 written earlier at `pos` (little endian).
    pub fn patch_u32(&mut self, pos: usize, v: u32) {
        self.buf[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads marshalled values from `buf` in byte order `endian`. Every method
/// returns an error (never panics) on truncated or invalid data.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
}

impl<'a> Reader<'a> {
    /// A reader at offset 0 of `buf` (which must start 8-aligned).
    pub fn new(buf: &'a [u8], endian: Endian) -> Reader<'a> {
        Reader { buf, pos: 0, endian }
    }
    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Whether every byte was consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    /// Skips padding to a multiple of `n`.
    pub fn align(&mut self, n: usize) -> Result<(), WireError> {
        let _ = n;
        todo!()
    }
    /// `y`
    pub fn u8(&mut self) -> Result<u8, WireError> {
        todo!()
    }
    /// `b`
    pub fn bool(&mut self) -> Result<bool, WireError> {
        todo!()
    }
    /// `u`
    pub fn u32(&mut self) -> Result<u32, WireError> {
        todo!()
    }
    /// `i`
    pub fn i32(&mut self) -> Result<i32, WireError> {
        todo!()
    }
    /// `s` (also checks UTF-8 and the trailing NUL)
    pub fn string(&mut self) -> Result<&'a str, WireError> {
        todo!()
    }
    /// `o`
    pub fn object_path(&mut self) -> Result<&'a str, WireError> {
        todo!()
    }
    /// `g`
    pub fn signature(&mut self) -> Result<&'a str, WireError> {
        todo!()
    }
    /// Reads an array length and aligns to `elem_align`; returns the offset
    /// where the array ends. Loop `while r.pos() < end`.
    pub fn begin_array(&mut self, elem_align: usize) -> Result<usize, WireError> {
        let _ = elem_align;
        todo!()
    }
    /// Skips one value of the single complete type at the start of `sig`
    /// (already validated).
    pub fn skip(&mut self, sig: &[u8]) -> Result<(), WireError> {
        let _ = sig;
        todo!()
    }
}
