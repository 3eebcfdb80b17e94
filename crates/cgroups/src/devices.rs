//! cgroup v2 device control: the OCI device rules compiled to an eBPF
//! program (BPF_PROG_TYPE_CGROUP_DEVICE) with v1's semantics: the last
//! matching rule wins, and the last "all devices" rule sets the default.

use crate::DeviceRule;
use berth_sys::BpfInsn;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2; // device type (1 block, 2 char)
const R3: u8 = 3; // requested access (1 mknod, 2 read, 4 write)
const R4: u8 = 4; // major
const R5: u8 = 5; // minor

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn { code, regs: dst | (src << 4), off, imm }
}

fn access_bits(a: &str) -> i32 {
    a.chars().fold(0, |m, c| {
        m | match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        }
    })
}

fn is_all(r: &DeviceRule) -> bool {
    matches!(r.kind.as_deref(), None | Some("a"))
        && r.major.is_none_or(|m| m < 0)
        && r.minor.is_none_or(|m| m < 0)
        && access_bits(r.access.as_deref().unwrap_or("rwm")) == 7
}

/// The program for `rules`.
pub fn program(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    // The last rule covering every device decides the default; earlier
    // rules are overridden by it.
    let (default, rest) = match rules.iter().rposition(is_all) {
        Some(k) => (rules[k].allow, &rules[k + 1..]),
        None => (true, rules),
    };
    let mut p = vec![
        insn(0x61, R2, R1, 0, 0),     // r2 = ctx->access_type
        insn(0x54, R2, 0, 0, 0xffff), // r2 &= 0xffff (type)
        insn(0x61, R3, R1, 0, 0),     // r3 = ctx->access_type
        insn(0x74, R3, 0, 0, 16),     // r3 >>= 16 (access)
        insn(0x61, R4, R1, 4, 0),     // r4 = ctx->major
        insn(0x61, R5, R1, 8, 0),     // r5 = ctx->minor
    ];
    // Last rule first: the first match returns.
    for r in rest.iter().rev() {
        let mut block = Vec::new();
        match r.kind.as_deref() {
            Some("c") => block.push(insn(0x55, R2, 0, 0, 2)), // if r2 != 2 skip
            Some("b") => block.push(insn(0x55, R2, 0, 0, 1)),
            _ => {}
        }
        let acc = access_bits(r.access.as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm"));
        if acc != 7 {
            block.push(insn(0xbc, R1, R3, 0, 0)); // w1 = w3
            block.push(insn(0x54, R1, 0, 0, !acc & 7)); // w1 &= ~acc
            block.push(insn(0x55, R1, 0, 0, 0)); // if r1 != 0 skip (asks for more)
        }
        // A number past 31 bits names no device (majors have 12 bits,
        // minors 20): such a rule can match nothing and is left out.
        let number = |n: Option<i64>| n.filter(|n| *n >= 0).map(i32::try_from).transpose();
        let (Ok(major), Ok(minor)) = (number(r.major), number(r.minor)) else { continue };
        if let Some(m) = major {
            block.push(insn(0x55, R4, 0, 0, m));
        }
        if let Some(m) = minor {
            block.push(insn(0x55, R5, 0, 0, m));
        }
        block.push(insn(0xb7, R0, 0, 0, i32::from(r.allow))); // r0 = allow
        block.push(insn(0x95, 0, 0, 0, 0)); // exit
                                            // Every conditional jump skips to the end of this block.
                                            // (A block has at most eight instructions.)
        let n = block.len();
        for (i, b) in block.iter_mut().enumerate() {
            if b.code == 0x55 {
                b.off = i16::try_from(n - i - 1).unwrap_or(i16::MAX);
            }
        }
        p.extend(block);
    }
    p.push(insn(0xb7, R0, 0, 0, i32::from(default)));
    p.push(insn(0x95, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one request (a tiny interpreter of the
    /// instructions `program` emits), so the logic is tested without root.
    fn eval(p: &[BpfInsn], kind: u32, access: u32, major: u32, minor: u32) -> bool {
        let mut r = [0u64; 11];
        let ctx = [(access << 16) | kind, major, minor];
        let mut pc = 0;
        loop {
            let i = p[pc];
            let (d, s) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            let low = |v: u64| u32::try_from(v & 0xffff_ffff).unwrap();
            pc += 1;
            match i.code {
                0x61 => r[d] = u64::from(ctx[usize::try_from(i.off / 4).unwrap()]),
                0x54 => r[d] = u64::from(low(r[d]) & i.imm.cast_unsigned()),
                0x74 => r[d] = u64::from(low(r[d]) >> i.imm),
                0xbc => r[d] = u64::from(low(r[s])),
                0x55 => {
                    if r[d] != u64::from(i.imm.cast_unsigned()) {
                        pc += usize::try_from(i.off).unwrap();
                    }
                }
                0xb7 => r[d] = i64::from(i.imm).cast_unsigned(),
                0x95 => return r[0] == 1,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rule(allow: bool, kind: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind: Some(kind.into()), major, minor, access: Some(access.into()) }
    }

    #[test]
    fn deny_all_then_allow_null_and_pts() {
        let rules = vec![
            DeviceRule { allow: false, access: Some("rwm".into()), ..Default::default() },
            rule(true, "c", Some(1), Some(3), "rwm"),
            rule(true, "c", Some(136), None, "rw"),
        ];
        let p = program(&rules);
        assert!(eval(&p, 2, 2 | 4, 1, 3)); // read+write /dev/null
        assert!(!eval(&p, 2, 2, 1, 5)); // /dev/zero: denied
        assert!(eval(&p, 2, 2, 136, 7)); // any pts
        assert!(!eval(&p, 2, 1, 136, 7)); // but no mknod of one
        assert!(!eval(&p, 1, 2, 1, 3)); // block 1:3 is not char 1:3
    }

    #[test]
    fn later_rules_win_and_no_deny_all_means_allow() {
        let rules = vec![rule(true, "c", Some(10), Some(200), "rwm"), rule(false, "c", Some(10), Some(200), "w")];
        let p = program(&rules);
        assert!(!eval(&p, 2, 4, 10, 200));
        assert!(eval(&p, 2, 2, 10, 200));
        assert!(eval(&p, 1, 2, 8, 0)); // default allow (no "a" rule)
    }
}
