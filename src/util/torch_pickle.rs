//! PyTorch's `torch.save` files (pytorch_model.bin, as many published OPUS-MT repositories
//! ship their weights): a zip holding `data.pkl` and one file per storage. The pickle is read by
//! a small stack machine that knows the opcodes `torch.save` writes and only the callables a
//! state dict needs (OrderedDict, `_rebuild_tensor_v2`, `_rebuild_parameter`, the storage
//! types): anything else is refused before any code could run, since nothing here runs code.

use super::io::{NamedTensor, TensorData};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// The most elements one tensor may claim (a hostile header cannot make us allocate more).
const MAX_ELEMENTS: usize = 1 << 31;

/// A value on the pickle machine's stack.
#[derive(Clone, Debug)]
enum Value {
    Mark,
    None,
    /// A truth value or a float: nothing here reads them.
    Scalar,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// An allowed callable, by its module and name.
    Global(String),
    /// A persistent storage: its element type, its file key and its element count.
    Storage {
        dtype: String,
        key: String,
        numel: usize,
    },
    /// A tensor view of a storage.
    Tensor {
        storage: Box<Value>,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
}

/// The callables a state dict may name.
const ALLOWED: [&str; 3] =
    ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"];

fn allowed(global: &str) -> bool {
    ALLOWED.contains(&global) || (global.starts_with("torch.") && global.ends_with("Storage"))
}

/// The tensors of a `torch.save` zip, as f32 (half types widened) or i64; `path` names it in
/// errors.
pub fn read(bytes: &[u8], path: &str) -> Result<Vec<NamedTensor>> {
    let bad = |msg: String| Error::Format { path: path.to_string(), msg };
    let entries = super::zip::read_with_paths(bytes, path)?;
    let pkl = entries
        .iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .ok_or_else(|| bad("has no data.pkl: not a torch.save file".into()))?;
    let prefix = pkl.0.trim_end_matches("data.pkl").to_string();
    if entries.iter().any(|(n, b)| n.ends_with("byteorder") && b.as_slice() != b"little") {
        return Err(bad("stores big-endian data".into()));
    }
    let files: HashMap<&str, &[u8]> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let root = run(&pkl.1).map_err(|msg| bad(format!("data.pkl: {msg}")))?;
    let Value::Dict(items) = root else { return Err(bad("data.pkl is not a dict of tensors".into())) };
    let mut out = Vec::new();
    for (key, value) in items {
        let (Value::Str(name), Value::Tensor { storage, offset, size, stride }) = (key, value) else { continue };
        let Value::Storage { dtype, key, numel } = *storage else { continue };
        let data = files
            .get(format!("{prefix}data/{key}").as_str())
            .ok_or_else(|| bad(format!("no storage {key} for {name}")))?;
        let data = gather(data, &dtype, numel, offset, &size, &stride).map_err(|msg| bad(format!("{name}: {msg}")))?;
        out.push(NamedTensor { name, shape: size, data });
    }
    Ok(out)
}

/// A tensor's elements in row-major order from its storage bytes.
fn gather(
    bytes: &[u8],
    dtype: &str,
    numel: usize,
    offset: usize,
    size: &[usize],
    stride: &[usize],
) -> std::result::Result<TensorData, String> {
    let width = match dtype {
        "torch.FloatStorage" => 4,
        "torch.HalfStorage" | "torch.BFloat16Storage" => 2,
        "torch.DoubleStorage" | "torch.LongStorage" => 8,
        other => return Err(format!("{other} is not a supported element type")),
    };
    if bytes.len() < numel.saturating_mul(width) || size.len() != stride.len() {
        return Err("its storage is shorter than it says".into());
    }
    let count =
        size.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS).ok_or("is too large")?;
    let last =
        size.iter().zip(stride).try_fold(offset, |acc, (&n, &s)| acc.checked_add(n.saturating_sub(1).checked_mul(s)?));
    if count > 0 && last.is_none_or(|l| l >= numel) {
        return Err("reaches past its storage".into());
    }
    let mut index = vec![0usize; size.len()];
    let mut at = Vec::with_capacity(count);
    for _ in 0..count {
        at.push(offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>());
        for d in (0..size.len()).rev() {
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    let word = |i: usize| &bytes[i * width..(i + 1) * width];
    Ok(match dtype {
        "torch.FloatStorage" => {
            TensorData::F32(at.iter().map(|&i| f32::from_le_bytes(word(i).try_into().unwrap_or_default())).collect())
        }
        "torch.HalfStorage" => {
            TensorData::F32(at.iter().map(|&i| half::f16::from_le_bytes([word(i)[0], word(i)[1]]).to_f32()).collect())
        }
        "torch.BFloat16Storage" => {
            TensorData::F32(at.iter().map(|&i| half::bf16::from_le_bytes([word(i)[0], word(i)[1]]).to_f32()).collect())
        }
        "torch.DoubleStorage" => TensorData::F32(
            at.iter().map(|&i| f64::from_le_bytes(word(i).try_into().unwrap_or_default()) as f32).collect(),
        ),
        _ => TensorData::I64(at.iter().map(|&i| i64::from_le_bytes(word(i).try_into().unwrap_or_default())).collect()),
    })
}

/// Runs the pickle in `data`: the value STOP returns.
fn run(data: &[u8]) -> std::result::Result<Value, String> {
    let mut m = Machine { data, at: 0, stack: Vec::new(), memo: HashMap::new() };
    loop {
        let op = m.byte()?;
        if op == b'.' {
            return m.pop();
        }
        m.op(op)?;
    }
}

struct Machine<'a> {
    data: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let data: &'a [u8] = self.data;
        let out = data.get(self.at..self.at.checked_add(n).ok_or("cut short")?).ok_or("cut short")?;
        self.at += n;
        Ok(out)
    }

    fn byte(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.data[self.at.min(self.data.len())..];
        let end = rest.iter().position(|&c| c == b'\n').ok_or("cut short")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> std::result::Result<Value, String> {
        self.stack.pop().ok_or_else(|| "pops an empty stack".to_string())
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> std::result::Result<Vec<Value>, String> {
        let mark = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("no mark")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn string(&mut self, len: usize) -> std::result::Result<(), String> {
        let s = String::from_utf8_lossy(self.take(len)?).into_owned();
        self.stack.push(Value::Str(s));
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> std::result::Result<(), String> {
        let g = format!("{module}.{name}");
        if !allowed(&g) {
            return Err(format!("refuses to call {g} (a state dict needs only tensors)"));
        }
        self.stack.push(Value::Global(g));
        Ok(())
    }

    fn op(&mut self, op: u8) -> std::result::Result<(), String> {
        match op {
            0x80 => drop(self.byte()?),
            0x95 => drop(self.take(8)?),
            b'c' => {
                let (module, name) = (self.line()?, self.line()?);
                self.global(&module, &name)?;
            }
            0x93 => {
                let (name, module) = (self.pop()?, self.pop()?);
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err("a global that is not named".into());
                };
                self.global(&module, &name)?;
            }
            b'q' => {
                let k = self.byte()? as u32;
                self.memo.insert(k, self.stack.last().cloned().ok_or("memo of nothing")?);
            }
            b'r' => {
                let k = self.u32()?;
                self.memo.insert(k, self.stack.last().cloned().ok_or("memo of nothing")?);
            }
            0x94 => {
                let k = self.memo.len() as u32;
                self.memo.insert(k, self.stack.last().cloned().ok_or("memo of nothing")?);
            }
            b'h' | b'j' => {
                let k = if op == b'h' { self.byte()? as u32 } else { self.u32()? };
                self.stack.push(self.memo.get(&k).cloned().ok_or("an unknown memo")?);
            }
            b'(' => self.stack.push(Value::Mark),
            b')' => self.stack.push(Value::Tuple(vec![])),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let at = self.stack.len().checked_sub(n).ok_or("a tuple of too few")?;
                let items = self.stack.split_off(at);
                self.stack.push(Value::Tuple(items));
            }
            b'X' => {
                let n = self.u32()? as usize;
                self.string(n)?;
            }
            0x8c => {
                let n = self.byte()? as usize;
                self.string(n)?;
            }
            b'J' => {
                let v = self.u32()? as i32;
                self.stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.byte()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let b = self.take(2)?;
                self.stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
            }
            0x8a => {
                let n = self.byte()? as usize;
                let b = self.take(n)?;
                if n > 8 {
                    return Err("an integer over 64 bits".into());
                }
                let mut v = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                v[..n].copy_from_slice(b);
                self.stack.push(Value::Int(i64::from_le_bytes(v)));
            }
            b'G' => {
                self.take(8)?;
                self.stack.push(Value::Scalar);
            }
            0x88 | 0x89 => self.stack.push(Value::Scalar),
            b'N' => self.stack.push(Value::None),
            b'}' => self.stack.push(Value::Dict(vec![])),
            b']' => self.stack.push(Value::List(vec![])),
            b'a' | b'e' => {
                let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                match self.stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err("appends to what is not a list".into()),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let (v, k) = (self.pop()?, self.pop()?);
                    vec![k, v]
                } else {
                    self.pop_mark()?
                };
                let Some(Value::Dict(d)) = self.stack.last_mut() else {
                    return Err("sets an item of what is not a dict".into());
                };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            // A state dict's attributes (`_metadata`): not needed.
            b'b' => drop(self.pop()?),
            b'Q' => {
                let pid = self.pop()?;
                self.stack.push(storage(pid)?);
            }
            b'R' => {
                let (args, f) = (self.pop()?, self.pop()?);
                self.stack.push(call(f, args)?);
            }
            other => return Err(format!("opcode 0x{other:02x} is not one torch.save writes")),
        }
        Ok(())
    }
}

/// A persistent id ('storage', type, key, location, numel) as a storage.
fn storage(pid: Value) -> std::result::Result<Value, String> {
    let Value::Tuple(items) = pid else { return Err("a persistent id that is not a tuple".into()) };
    match &items[..] {
        [Value::Str(kind), Value::Global(dtype), Value::Str(key), _, Value::Int(n)] if kind == "storage" && *n >= 0 => {
            Ok(Value::Storage { dtype: dtype.clone(), key: key.clone(), numel: *n as usize })
        }
        _ => Err("a persistent id that is not a storage".into()),
    }
}

fn ints(v: &Value) -> std::result::Result<Vec<usize>, String> {
    let Value::Tuple(items) = v else { return Err("a size that is not a tuple".into()) };
    items
        .iter()
        .map(|x| match x {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            _ => Err("a size that is not a natural number".to_string()),
        })
        .collect()
}

/// Calls an allowed callable.
fn call(f: Value, args: Value) -> std::result::Result<Value, String> {
    let Value::Tuple(args) = args else { return Err("arguments that are not a tuple".into()) };
    match (f, &args[..]) {
        (Value::Global(g), _) if g == "collections.OrderedDict" => Ok(Value::Dict(vec![])),
        (Value::Global(g), [storage @ Value::Storage { .. }, Value::Int(offset), size, stride, ..])
            if g == "torch._utils._rebuild_tensor_v2" && *offset >= 0 =>
        {
            Ok(Value::Tensor {
                storage: Box::new(storage.clone()),
                offset: *offset as usize,
                size: ints(size)?,
                stride: ints(stride)?,
            })
        }
        (Value::Global(g), [tensor @ Value::Tensor { .. }, ..]) if g == "torch._utils._rebuild_parameter" => {
            Ok(tensor.clone())
        }
        (f, _) => Err(format!("a call of {f:?} with arguments it does not take")),
    }
}
