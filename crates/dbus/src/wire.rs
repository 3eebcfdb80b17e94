//! The D-Bus wire format: values marshalled by their signature, with each
//! type aligned to its natural boundary counted from the message's start,
//! and whole messages (a fixed 12-byte start, the header fields as
//! `a(yv)`, padding to 8, the body).
//!
//! Decoding never trusts the peer: every length is checked against what
//! was read, signatures are parsed with a depth limit, and a bad message is
//! an error, not a panic.

use crate::DbusError;

/// One D-Bus value. Arrays carry their element signature, so that an empty
/// array still has a type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Double(f64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    DictEntry(Box<Value>, Box<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A variant holding `v`.
    pub fn variant(v: Value) -> Value {
        Value::Variant(Box::new(v))
    }

    /// The value's signature.
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::Double(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::ObjectPath(_) => "o".into(),
            Value::Signature(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => format!("({})", fields.iter().map(Value::signature).collect::<String>()),
            Value::DictEntry(k, v) => format!("{{{}{}}}", k.signature(), v.signature()),
            Value::Variant(_) => "v".into(),
        }
    }

    /// The string inside a `s`, `o` or `g` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => Some(s),
            _ => None,
        }
    }
}

/// The alignment of the type a signature starts with.
fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

fn pad(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

/// A fixed-size value, aligned to its own size.
fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    pad(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    put(buf, &v.to_le_bytes());
}

/// A length as the wire's u32; D-Bus caps arrays at 64 MiB, far below it.
fn len32(n: usize) -> Result<u32, DbusError> {
    u32::try_from(n).map_err(|_| DbusError::Malformed("a value longer than 4 GiB"))
}

fn put_string(buf: &mut Vec<u8>, s: &str) -> Result<(), DbusError> {
    if s.contains('\0') {
        return Err(DbusError::Malformed("a string with a NUL byte"));
    }
    put_u32(buf, len32(s.len())?);
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    Ok(())
}

/// Appends `v` to `buf` (little-endian), aligned from the buffer's start.
pub fn encode(buf: &mut Vec<u8>, v: &Value) -> Result<(), DbusError> {
    match v {
        Value::Byte(b) => buf.push(*b),
        Value::Bool(b) => put_u32(buf, u32::from(*b)),
        Value::I16(x) => put(buf, &x.to_le_bytes()),
        Value::U16(x) => put(buf, &x.to_le_bytes()),
        Value::I32(x) => put(buf, &x.to_le_bytes()),
        Value::U32(x) => put_u32(buf, *x),
        Value::I64(x) => put(buf, &x.to_le_bytes()),
        Value::U64(x) => put(buf, &x.to_le_bytes()),
        Value::Double(x) => put(buf, &x.to_le_bytes()),
        Value::Str(s) | Value::ObjectPath(s) => put_string(buf, s)?,
        Value::Signature(s) => {
            let n = u8::try_from(s.len()).map_err(|_| DbusError::Malformed("a signature longer than 255 bytes"))?;
            buf.push(n);
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        Value::Array(elem, items) => {
            pad(buf, 4);
            let at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            pad(buf, alignment(elem.as_bytes().first().copied().unwrap_or(b'y')));
            let start = buf.len();
            for it in items {
                if it.signature() != *elem {
                    return Err(DbusError::Malformed("an array element of another type than the array's"));
                }
                encode(buf, it)?;
            }
            let n = len32(buf.len() - start)?;
            buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
        Value::Struct(fields) => {
            pad(buf, 8);
            for f in fields {
                encode(buf, f)?;
            }
        }
        Value::DictEntry(k, val) => {
            pad(buf, 8);
            encode(buf, k)?;
            encode(buf, val)?;
        }
        Value::Variant(inner) => {
            encode(buf, &Value::Signature(inner.signature()))?;
            encode(buf, inner)?;
        }
    }
    Ok(())
}

/// Splits the first complete type off a signature.
pub fn first_type(sig: &[u8], depth: usize) -> Result<(&[u8], &[u8]), DbusError> {
    if depth > 32 {
        return Err(DbusError::Malformed("a signature nested too deep"));
    }
    let bad = DbusError::Malformed("an invalid signature");
    let (&c, _) = sig.split_first().ok_or(DbusError::Malformed("an empty signature"))?;
    let n = match c {
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o' | b'g' | b'v' | b'h' => 1,
        b'a' => 1 + first_type(&sig[1..], depth + 1)?.0.len(),
        b'(' | b'{' => {
            let close = if c == b'(' { b')' } else { b'}' };
            let mut i = 1;
            loop {
                match sig.get(i) {
                    None => return Err(bad),
                    Some(x) if *x == close => break i + 1,
                    Some(_) => i += first_type(&sig[i..], depth + 1)?.0.len(),
                }
            }
        }
        _ => return Err(bad),
    };
    Ok(sig.split_at(n))
}

/// Reads values out of a received message.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize, big_endian: bool) -> Reader<'a> {
        Reader { buf, pos, big_endian }
    }

    fn align(&mut self, a: usize) -> Result<(), DbusError> {
        let to = self.pos.next_multiple_of(a);
        if to > self.buf.len() {
            return Err(DbusError::Malformed("a message cut short"));
        }
        self.pos = to;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DbusError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(DbusError::Malformed("a message cut short"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DbusError> {
        self.align(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        if self.big_endian {
            a.reverse();
        }
        Ok(a)
    }

    pub fn u32(&mut self) -> Result<u32, DbusError> {
        Ok(u32::from_le_bytes(self.fixed::<4>()?))
    }

    fn text(&mut self, len: usize) -> Result<String, DbusError> {
        let b = self.take(len)?;
        if self.take(1)? != [0] {
            return Err(DbusError::Malformed("a string without its NUL"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| DbusError::Malformed("a string that is not UTF-8"))
    }

    /// Decodes one value of the single complete type `ty`.
    pub fn value(&mut self, ty: &[u8], depth: usize) -> Result<Value, DbusError> {
        if depth > 64 {
            return Err(DbusError::Malformed("a value nested too deep"));
        }
        let c = *ty.first().ok_or(DbusError::Malformed("an empty signature"))?;
        Ok(match c {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(DbusError::Malformed("a boolean other than 0 or 1")),
            },
            b'n' => Value::I16(i16::from_le_bytes(self.fixed::<2>()?)),
            b'q' => Value::U16(u16::from_le_bytes(self.fixed::<2>()?)),
            b'i' => Value::I32(i32::from_le_bytes(self.fixed::<4>()?)),
            b'u' | b'h' => Value::U32(self.u32()?),
            b'x' => Value::I64(i64::from_le_bytes(self.fixed::<8>()?)),
            b't' => Value::U64(u64::from_le_bytes(self.fixed::<8>()?)),
            b'd' => Value::Double(f64::from_le_bytes(self.fixed::<8>()?)),
            b's' | b'o' => {
                let n = usize::try_from(self.u32()?).map_err(|_| DbusError::Malformed("a string length"))?;
                let s = self.text(n)?;
                if c == b's' {
                    Value::Str(s)
                } else {
                    Value::ObjectPath(s)
                }
            }
            b'g' => {
                let n = usize::from(self.take(1)?[0]);
                Value::Signature(self.text(n)?)
            }
            b'v' => {
                let n = usize::from(self.take(1)?[0]);
                let sig = self.text(n)?;
                let (one, rest) = first_type(sig.as_bytes(), 0)?;
                if !rest.is_empty() {
                    return Err(DbusError::Malformed("a variant of more than one type"));
                }
                Value::Variant(Box::new(self.value(one, depth + 1)?))
            }
            b'a' => {
                let n = usize::try_from(self.u32()?).map_err(|_| DbusError::Malformed("an array length"))?;
                if n > 64 << 20 {
                    return Err(DbusError::Malformed("an array over 64 MiB"));
                }
                let (elem, _) = first_type(&ty[1..], 0)?;
                self.align(alignment(elem[0]))?;
                let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(DbusError::Malformed("a message cut short"))?;
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value(elem, depth + 1)?);
                }
                if self.pos != end {
                    return Err(DbusError::Malformed("an array whose length does not match its elements"));
                }
                Value::Array(String::from_utf8_lossy(elem).into_owned(), items)
            }
            b'(' => {
                self.align(8)?;
                let mut inner = &ty[1..ty.len() - 1];
                let mut fields = Vec::new();
                while !inner.is_empty() {
                    let (one, rest) = first_type(inner, 0)?;
                    fields.push(self.value(one, depth + 1)?);
                    inner = rest;
                }
                Value::Struct(fields)
            }
            b'{' => {
                self.align(8)?;
                let (k, rest) = first_type(&ty[1..], 0)?;
                let (v, _) = first_type(rest, 0)?;
                let key = self.value(k, depth + 1)?;
                let val = self.value(v, depth + 1)?;
                Value::DictEntry(Box::new(key), Box::new(val))
            }
            _ => return Err(DbusError::Malformed("an unknown type code")),
        })
    }

    /// Decodes every value of `sig` in order.
    pub fn values(&mut self, sig: &str) -> Result<Vec<Value>, DbusError> {
        let mut out = Vec::new();
        let mut s = sig.as_bytes();
        while !s.is_empty() {
            let (one, rest) = first_type(s, 0)?;
            out.push(self.value(one, 0)?);
            s = rest;
        }
        Ok(out)
    }
}

/// Message types.
pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// Header flag: no reply is wanted.
pub const NO_REPLY_EXPECTED: u8 = 1;

/// One message, sent or received.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub kind: u8,
    pub flags: u8,
    pub serial: u32,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub body: Vec<Value>,
}

impl Message {
    /// The message as bytes (little-endian).
    pub fn encode(&self) -> Result<Vec<u8>, DbusError> {
        let mut body = Vec::new();
        for v in &self.body {
            encode(&mut body, v)?;
        }
        let sig: String = self.body.iter().map(Value::signature).collect();
        let mut fields = Vec::new();
        let mut field = |code: u8, v: Value| fields.push(Value::Struct(vec![Value::Byte(code), Value::variant(v)]));
        if let Some(p) = &self.path {
            field(1, Value::ObjectPath(p.clone()));
        }
        if let Some(i) = &self.interface {
            field(2, Value::str(i.clone()));
        }
        if let Some(m) = &self.member {
            field(3, Value::str(m.clone()));
        }
        if let Some(e) = &self.error_name {
            field(4, Value::str(e.clone()));
        }
        if let Some(r) = self.reply_serial {
            field(5, Value::U32(r));
        }
        if let Some(d) = &self.destination {
            field(6, Value::str(d.clone()));
        }
        if !sig.is_empty() {
            field(8, Value::Signature(sig));
        }
        let mut buf = vec![b'l', self.kind, self.flags, 1];
        buf.extend_from_slice(&len32(body.len())?.to_le_bytes());
        buf.extend_from_slice(&self.serial.to_le_bytes());
        encode(&mut buf, &Value::Array("(yv)".into(), fields))?;
        pad(&mut buf, 8);
        buf.extend_from_slice(&body);
        Ok(buf)
    }

    /// The total length of a message from its first 16 bytes, checked
    /// against `max`.
    pub fn length(start: &[u8; 16], max: usize) -> Result<usize, DbusError> {
        let big = match start[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(DbusError::Malformed("an unknown byte order")),
        };
        let word = |i: usize| {
            let mut w = [start[i], start[i + 1], start[i + 2], start[i + 3]];
            if big {
                w.reverse();
            }
            usize::try_from(u32::from_le_bytes(w)).unwrap_or(usize::MAX)
        };
        let (body, fields) = (word(4), word(12));
        let total = 16usize.checked_add(fields).map(|h| h.next_multiple_of(8)).and_then(|h| h.checked_add(body));
        total.filter(|t| *t <= max).ok_or(DbusError::Malformed("a message longer than allowed"))
    }

    /// Parses a whole message.
    pub fn decode(buf: &[u8]) -> Result<Message, DbusError> {
        if buf.len() < 16 {
            return Err(DbusError::Malformed("a message cut short"));
        }
        let big = match buf[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(DbusError::Malformed("an unknown byte order")),
        };
        let mut r = Reader::new(buf, 4, big);
        let body_len = usize::try_from(r.u32()?).map_err(|_| DbusError::Malformed("a body length"))?;
        let serial = r.u32()?;
        let mut m = Message { kind: buf[1], flags: buf[2], serial, ..Default::default() };
        let Value::Array(_, fields) = r.value(b"a(yv)", 0)? else { return Err(DbusError::Malformed("header fields")) };
        let mut sig = String::new();
        for f in fields {
            let Value::Struct(mut kv) = f else { continue };
            let (Some(Value::Variant(v)), Some(Value::Byte(code))) = (kv.pop(), kv.pop()) else { continue };
            let text = v.as_str().map(str::to_string);
            match (code, *v) {
                (1, _) => m.path = text,
                (2, _) => m.interface = text,
                (3, _) => m.member = text,
                (4, _) => m.error_name = text,
                (5, Value::U32(s)) => m.reply_serial = Some(s),
                (6, _) => m.destination = text,
                (7, _) => m.sender = text,
                (8, _) => sig = text.unwrap_or_default(),
                _ => {}
            }
        }
        r.align(8)?;
        let start = r.pos;
        if buf.len() - start != body_len {
            return Err(DbusError::Malformed("a body of another length than its header says"));
        }
        // The body's alignment counts from its own start, which is 8-aligned.
        let mut b = Reader::new(&buf[start..], 0, big);
        m.body = b.values(&sig)?;
        if b.pos != body_len {
            return Err(DbusError::Malformed("a body longer than its signature"));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: &Message) -> Message {
        let bytes = m.encode().unwrap();
        let mut start = [0u8; 16];
        start.copy_from_slice(&bytes[..16]);
        assert_eq!(Message::length(&start, 1 << 20).unwrap(), bytes.len());
        Message::decode(&bytes).unwrap()
    }

    #[test]
    fn a_start_transient_unit_call_survives_the_round_trip() {
        let props = Value::Array(
            "(sv)".into(),
            vec![
                Value::Struct(vec![Value::str("Delegate"), Value::variant(Value::Bool(true))]),
                Value::Struct(vec![Value::str("PIDs"), Value::variant(Value::Array("u".into(), vec![Value::U32(42)]))]),
                Value::Struct(vec![Value::str("MemoryMax"), Value::variant(Value::U64(64 << 20))]),
                Value::Struct(vec![Value::str("AllowedCPUs"), Value::variant(Value::Array("y".into(), vec![Value::Byte(3)]))]),
                Value::Struct(vec![
                    Value::str("DeviceAllow"),
                    Value::variant(Value::Array("(ss)".into(), vec![Value::Struct(vec![Value::str("/dev/char/1:3"), Value::str("rwm")])])),
                ]),
            ],
        );
        let m = Message {
            kind: METHOD_CALL,
            serial: 7,
            path: Some("/org/freedesktop/systemd1".into()),
            interface: Some("org.freedesktop.systemd1.Manager".into()),
            member: Some("StartTransientUnit".into()),
            destination: Some("org.freedesktop.systemd1".into()),
            body: vec![Value::str("berth-x.scope"), Value::str("replace"), props, Value::Array("(sa(sv))".into(), vec![])],
            ..Default::default()
        };
        let back = roundtrip(&m);
        assert_eq!(back, m);
        assert_eq!(back.body.iter().map(Value::signature).collect::<String>(), "ssa(sv)a(sa(sv))");
    }

    #[test]
    fn every_basic_type_and_a_dict_round_trip() {
        let body = vec![
            Value::Byte(255),
            Value::I16(-2),
            Value::U16(65535),
            Value::I32(-70000),
            Value::U64(u64::MAX),
            Value::I64(i64::MIN),
            Value::Double(1.5),
            Value::ObjectPath("/a/b".into()),
            Value::Signature("a{sv}".into()),
            Value::Array("{sv}".into(), vec![Value::DictEntry(Box::new(Value::str("k")), Box::new(Value::variant(Value::str("v"))))]),
        ];
        let m = Message { kind: SIGNAL, serial: 1, body, ..Default::default() };
        assert_eq!(roundtrip(&m), m);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let m = Message {
            kind: SIGNAL,
            serial: 3,
            member: Some("JobRemoved".into()),
            body: vec![Value::U32(1), Value::ObjectPath("/j/1".into()), Value::str("u.scope"), Value::str("done")],
            ..Default::default()
        };
        let good = m.encode().unwrap();
        // Every truncation, and every single-byte change, decodes or fails cleanly.
        for n in 0..good.len() {
            let _ = Message::decode(&good[..n]);
        }
        for i in 0..good.len() {
            for b in [0u8, 1, 0x7f, 0xff, b'(', b'a', b'v'] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = Message::decode(&bad);
            }
        }
        assert!(first_type(&[b'a'; 100], 0).is_err(), "depth limit");
        first_type(b"(ss", 0).unwrap_err();
    }

    #[test]
    fn mistyped_values_are_refused_when_encoding() {
        let mut buf = Vec::new();
        encode(&mut buf, &Value::Array("s".into(), vec![Value::U32(1)])).unwrap_err();
        encode(&mut buf, &Value::str("a\0b")).unwrap_err();
    }
}
