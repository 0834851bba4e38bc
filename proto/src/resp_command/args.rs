//! Argument access for the RESP command parser: the `ArgList` view over a request's
//! arguments, the `Args` cursor that reports the command's arity error, and the stack-only
//! upper-casing used to match names and options without allocating.

use crate::error::CommandError;
use crate::resp::{parse_i64, RespArgs};

/// Read access to a request's arguments (index 0 is the command name).
pub trait ArgList<'a> {
    /// Number of arguments, the name included.
    fn arg_count(&self) -> usize;
    /// Argument `i`, or `None` past the end.
    fn arg(&self, i: usize) -> Option<&'a [u8]>;
}

impl<'a> ArgList<'a> for [&'a [u8]] {
    fn arg_count(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i).copied()
    }
}

impl<'a> ArgList<'a> for Vec<&'a [u8]> {
    fn arg_count(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i).copied()
    }
}

impl<'a> ArgList<'a> for RespArgs<'a, '_> {
    fn arg_count(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i)
    }
}

/// Longest command or option name we recognise.
const MAX_NAME: usize = 16;

/// Upper-cases a short name onto the stack; empty for names too long to be known.
pub(super) fn upper(name: &[u8]) -> ([u8; MAX_NAME], usize) {
    let mut buf = [0u8; MAX_NAME];
    if name.len() > MAX_NAME {
        return (buf, 0);
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    (buf, name.len())
}

/// Wraps argument access with the command's arity error.
pub(super) struct Args<'x, 'a, A: ArgList<'a> + ?Sized> {
    pub(super) args: &'x A,
    pub(super) n: usize,
    pub(super) name: &'static str,
    pub(super) _a: std::marker::PhantomData<&'a ()>,
}

impl<'a, A: ArgList<'a> + ?Sized> Args<'_, 'a, A> {
    pub(super) fn get(&self, i: usize) -> Result<&'a [u8], CommandError> {
        self.args.arg(i).ok_or(CommandError::WrongArity(self.name))
    }
    pub(super) fn arity(&self, ok: bool) -> Result<(), CommandError> {
        if ok {
            Ok(())
        } else {
            Err(CommandError::WrongArity(self.name))
        }
    }
    pub(super) fn exact(&self, n: usize) -> Result<(), CommandError> {
        self.arity(self.n == n)
    }
    pub(super) fn at_least(&self, n: usize) -> Result<(), CommandError> {
        self.arity(self.n >= n)
    }
    /// Arguments `from..` collected (multi-key commands).
    pub(super) fn rest(&self, from: usize) -> Vec<&'a [u8]> {
        let mut v = Vec::with_capacity(self.n.saturating_sub(from));
        v.extend((from..self.n).filter_map(|i| self.args.arg(i)));
        v
    }
    pub(super) fn int(&self, i: usize) -> Result<i64, CommandError> {
        parse_i64(self.get(i)?).ok_or(CommandError::NotInteger)
    }
}
