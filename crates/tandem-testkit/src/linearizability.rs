//! A linearizability checker for key/value registers (the Wing–Gong search with Porcupine's
//! memoisation), for histories recorded by concurrent clients under faults. Each key is checked
//! on its own: a history is linearizable when every key's is.
//!
//! An operation whose outcome is unknown (its request may or may not have been applied) has no
//! return: it may take effect at any point after its call, or never be observed.
//!
//! Compare-and-set names the value it expects. Clients send it as `?if_revision=` with the
//! revision they read that value at; as every write writes a value of its own, "the key is at
//! that revision" and "the key holds that value" are the same condition.

use std::collections::{BTreeMap, HashSet};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    Read,
    Write(String),
    /// Write `new` if the key holds `expected` (`None`: if the key is absent).
    Cas {
        expected: Option<String>,
        new: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// What a read saw (`None`: the key was absent).
    Read(Option<String>),
    /// A write, or a compare-and-set whose condition held, was acknowledged.
    Written,
    /// A compare-and-set was refused: the key did not hold the expected value.
    Refused,
    /// The request may or may not have been applied.
    Unknown,
}

/// One operation as a client saw it; times are in any monotonic unit shared by all clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub op: RegisterOp,
    pub output: RegisterOutput,
    pub call: u64,
    /// `None` when the outcome is unknown.
    pub ret: Option<u64>,
}

/// The operations on one key that no linearization explains.
#[derive(Debug)]
pub struct Anomaly {
    pub key: String,
    /// The key's whole history.
    pub operations: Vec<Operation>,
    /// A smallest part of it that is still not linearizable.
    pub smallest: Vec<Operation>,
}

fn write_operations(f: &mut std::fmt::Formatter<'_>, ops: &[Operation]) -> std::fmt::Result {
    for op in ops {
        let ret = op.ret.map(|r| r.to_string()).unwrap_or_else(|| "?".into());
        writeln!(
            f,
            "  client {} [{} .. {}] {:?} -> {:?}",
            op.client, op.call, ret, op.op, op.output
        )?;
    }
    Ok(())
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "history of key {:?} is not linearizable; the smallest part that shows it ({} of {} operations):",
            self.key,
            self.smallest.len(),
            self.operations.len()
        )?;
        write_operations(f, &self.smallest)?;
        writeln!(f, "the key's whole history:")?;
        write_operations(f, &self.operations)
    }
}

/// The value an operation may leave in the register.
fn written_value(op: &RegisterOp) -> Option<&str> {
    match op {
        RegisterOp::Read => None,
        RegisterOp::Write(value) | RegisterOp::Cas { new: value, .. } => Some(value),
    }
}

/// True when another operation in `ops` saw the value that `ops[i]` writes: shrinking must then
/// keep it, or the smallest history would only show a value that nobody wrote.
fn observed(ops: &[Operation], i: usize) -> bool {
    let Some(value) = written_value(&ops[i].op) else {
        return false;
    };
    ops.iter().any(|other| {
        matches!(&other.output, RegisterOutput::Read(Some(seen)) if seen == value)
            || matches!(&other.op, RegisterOp::Cas { expected: Some(e), .. } if e == value)
    })
}

/// Checks every key's history; answers the first key whose history is not linearizable.
pub fn check_registers(history: &[Operation]) -> Result<(), Anomaly> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        if !linearizable(&ops) {
            let mut operations = ops;
            operations.sort_by_key(|op| op.call);
            let smallest =
                crate::history::shrink(operations.clone(), |ops| !linearizable(ops), observed);
            return Err(Anomaly {
                key: key.to_string(),
                operations,
                smallest,
            });
        }
    }
    Ok(())
}

/// The register's next state if `op` with `output` can happen in `state`.
fn step(
    state: &Option<String>,
    op: &RegisterOp,
    output: &RegisterOutput,
) -> Option<Option<String>> {
    match (op, output) {
        (RegisterOp::Read, RegisterOutput::Read(seen)) => (seen == state).then(|| state.clone()),
        (RegisterOp::Read, _) => Some(state.clone()),
        (RegisterOp::Write(value), _) => Some(Some(value.clone())),
        (RegisterOp::Cas { expected, new }, RegisterOutput::Written) => {
            (state == expected).then(|| Some(new.clone()))
        }
        (RegisterOp::Cas { expected, .. }, RegisterOutput::Refused) => {
            (state != expected).then(|| state.clone())
        }
        // Unknown: it took effect if its condition held when it ran, and did nothing otherwise
        // (never running at all is the same as running after everything else).
        (RegisterOp::Cas { expected, new }, _) => Some(if state == expected {
            Some(new.clone())
        } else {
            state.clone()
        }),
    }
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return entry.
    partner: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

fn linearizable(ops: &[Operation]) -> bool {
    // Calls and returns in time order; an unknown return comes after everything.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, true, i));
        events.push((op.ret.unwrap_or(u64::MAX), false, i));
    }
    // At equal times a call sorts first: touching operations count as concurrent.
    events.sort_by_key(|(time, is_call, i)| (*time, !*is_call, *i));
    let mut entries: Vec<Entry> = events
        .iter()
        .enumerate()
        .map(|(n, (_, is_call, op))| Entry {
            op: *op,
            is_call: *is_call,
            partner: usize::MAX,
            prev: n.checked_sub(1),
            next: (n + 1 < events.len()).then_some(n + 1),
        })
        .collect();
    let mut call_of = vec![usize::MAX; ops.len()];
    for n in 0..entries.len() {
        if entries[n].is_call {
            call_of[entries[n].op] = n;
        } else {
            let call = call_of[entries[n].op];
            entries[call].partner = n;
        }
    }
    let mut head = (!entries.is_empty()).then_some(0);
    let mut state: Option<String> = None;
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut cursor = head;

    let lift = |entries: &mut Vec<Entry>, head: &mut Option<usize>, n: usize| {
        for m in [n, entries[n].partner] {
            let Entry { prev, next, .. } = entries[m];
            match prev {
                Some(p) => entries[p].next = next,
                None => *head = next,
            }
            if let Some(x) = next {
                entries[x].prev = prev;
            }
        }
    };
    let unlift = |entries: &mut Vec<Entry>, head: &mut Option<usize>, n: usize| {
        for m in [entries[n].partner, n] {
            let Entry { prev, next, .. } = entries[m];
            match prev {
                Some(p) => entries[p].next = Some(m),
                None => *head = Some(m),
            }
            if let Some(x) = next {
                entries[x].prev = Some(m);
            }
        }
    };

    while head.is_some() {
        let Some(n) = cursor else { return false };
        let entry = entries[n];
        if entry.is_call {
            let op = &ops[entry.op];
            if let Some(next_state) = step(&state, &op.op, &op.output) {
                let mut next_linearized = linearized.clone();
                next_linearized[entry.op / 64] |= 1 << (entry.op % 64);
                if seen.insert((next_linearized.clone(), next_state.clone())) {
                    stack.push((n, state));
                    state = next_state;
                    linearized = next_linearized;
                    lift(&mut entries, &mut head, n);
                    cursor = head;
                    continue;
                }
            }
            cursor = entry.next;
        } else {
            // A return reached before its call was linearized: undo the last choice.
            let Some((call, previous)) = stack.pop() else {
                return false;
            };
            state = previous;
            linearized[entries[call].op / 64] &= !(1 << (entries[call].op % 64));
            unlift(&mut entries, &mut head, call);
            cursor = entries[call].next;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: usize,
        op: RegisterOp,
        output: RegisterOutput,
        call: u64,
        ret: Option<u64>,
    ) -> Operation {
        Operation {
            client,
            key: "k".into(),
            op,
            output,
            call,
            ret,
        }
    }
    fn write(client: usize, v: &str, call: u64, ret: u64) -> Operation {
        op(
            client,
            RegisterOp::Write(v.into()),
            RegisterOutput::Written,
            call,
            Some(ret),
        )
    }
    fn read(client: usize, v: Option<&str>, call: u64, ret: u64) -> Operation {
        op(
            client,
            RegisterOp::Read,
            RegisterOutput::Read(v.map(str::to_string)),
            call,
            Some(ret),
        )
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            read(0, None, 0, 1),
            write(0, "a", 2, 3),
            read(1, Some("a"), 4, 5),
        ];
        assert!(check_registers(&h).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not() {
        let h = vec![
            write(0, "a", 0, 1),
            write(0, "b", 2, 3),
            read(1, Some("a"), 4, 5),
        ];
        let anomaly = check_registers(&h).unwrap_err();
        assert_eq!(anomaly.key, "k");
        assert!(anomaly.to_string().contains("not linearizable"));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = vec![
            write(0, "a", 0, 10),
            read(1, Some("a"), 1, 2),
            read(2, None, 1, 3),
        ];
        assert!(check_registers(&h).is_ok());
    }

    #[test]
    fn reads_cannot_flip_back() {
        // Two overlapping writes; once a read saw b after another saw a, a third may not see a
        // again unless a is written again.
        let h = vec![
            write(0, "a", 0, 10),
            write(1, "b", 0, 10),
            read(2, Some("a"), 11, 12),
            read(2, Some("b"), 13, 14),
            read(2, Some("a"), 15, 16),
        ];
        assert!(check_registers(&h).is_err());
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        let unknown = op(
            0,
            RegisterOp::Write("x".into()),
            RegisterOutput::Unknown,
            0,
            None,
        );
        let seen_late = vec![
            unknown.clone(),
            read(1, None, 1, 2),
            read(1, Some("x"), 50, 51),
        ];
        assert!(check_registers(&seen_late).is_ok());
        let never_seen = vec![unknown, read(1, None, 1, 2), read(1, None, 50, 51)];
        assert!(check_registers(&never_seen).is_ok());
    }

    fn cas(
        client: usize,
        expected: Option<&str>,
        new: &str,
        output: RegisterOutput,
        call: u64,
        ret: Option<u64>,
    ) -> Operation {
        op(
            client,
            RegisterOp::Cas {
                expected: expected.map(str::to_string),
                new: new.into(),
            },
            output,
            call,
            ret,
        )
    }

    #[test]
    fn compare_and_set_succeeds_only_on_the_expected_value() {
        let ok = vec![
            write(0, "a", 0, 1),
            cas(1, Some("a"), "b", RegisterOutput::Written, 2, Some(3)),
            read(0, Some("b"), 4, 5),
        ];
        assert!(check_registers(&ok).is_ok());
        let wrong = vec![
            write(0, "a", 0, 1),
            cas(1, Some("z"), "b", RegisterOutput::Written, 2, Some(3)),
        ];
        assert!(check_registers(&wrong).is_err());
    }

    #[test]
    fn a_refused_compare_and_set_needs_another_value_and_changes_nothing() {
        let refused_wrongly = vec![
            write(0, "a", 0, 1),
            cas(1, Some("a"), "b", RegisterOutput::Refused, 2, Some(3)),
        ];
        assert!(check_registers(&refused_wrongly).is_err());
        let refused_then_applied = vec![
            write(0, "a", 0, 1),
            cas(1, Some("z"), "b", RegisterOutput::Refused, 2, Some(3)),
            read(0, Some("b"), 4, 5),
        ];
        assert!(check_registers(&refused_then_applied).is_err());
    }

    #[test]
    fn an_unknown_compare_and_set_may_apply_or_not() {
        let unknown = cas(1, None, "b", RegisterOutput::Unknown, 0, None);
        assert!(check_registers(&[unknown.clone(), read(0, Some("b"), 5, 6)]).is_ok());
        assert!(check_registers(&[unknown.clone(), read(0, None, 5, 6)]).is_ok());
        // ... but only while its condition holds.
        let too_late = vec![unknown, write(0, "a", 1, 2), read(0, Some("b"), 5, 6)];
        assert!(check_registers(&too_late).is_err());
    }

    #[test]
    fn the_smallest_history_keeps_the_write_a_stale_read_saw() {
        let mut h = vec![write(0, "a", 0, 1), write(0, "b", 2, 3)];
        for n in 0..20 {
            h.push(read(2, Some("b"), 10 + 2 * n, 11 + 2 * n));
        }
        h.push(read(1, Some("a"), 100, 101));
        let anomaly = check_registers(&h).unwrap_err();
        assert_eq!(anomaly.operations.len(), 23);
        assert_eq!(
            anomaly.smallest,
            vec![
                write(0, "a", 0, 1),
                write(0, "b", 2, 3),
                read(1, Some("a"), 100, 101)
            ]
        );
        assert!(anomaly.to_string().contains("3 of 23 operations"));
    }

    #[test]
    fn a_value_nobody_wrote_is_not_linearizable() {
        let h = vec![write(0, "a", 0, 1), read(1, Some("z"), 2, 3)];
        assert!(check_registers(&h).is_err());
    }
}
