//! Solana: `unsigned_raw_tx` is the serialized message (legacy or v0), or
//! an unsigned wire transaction (shortvec signature count, that many 64-byte
//! signature slots, then the message).
//!
//! Ed25519 signs the message itself, not a digest of it, so the "signing
//! hash" is the message bytes. ASSUMPTION: for Solana, each
//! `msg_hash_list` entry is the hex of the message bytes the TSS Node signs;
//! a sha256 of the message does not match.
//!
//! The message layout is simple enough to read by hand (no Solana SDK
//! crate, whose dependency tree is very large): header (3 bytes), shortvec
//! account keys, recent blockhash, shortvec instructions, and for v0 the
//! address-table lookups. Every byte must be consumed.

use alloy_primitives::U256;
use curve25519_dalek::edwards::CompressedEdwardsY;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    Action, AddressEq, Asset, DecodeError, Decoded, SplDest, TokenTransfer, Transfer, hex0x,
};

const SYSTEM_PROGRAM: [u8; 32] = [0; 32];
/// TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA
const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const ATA_PROGRAM: &str = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
const COMPUTE_BUDGET_PROGRAM: &str = "ComputeBudget111111111111111111111111111111";
const MEMO_PROGRAMS: [&str; 2] = [
    "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
    "Memo1UhkJRfHyvLMcVucJwxXeuD6YgKYRMnzc6xAAUt",
];

fn b58(k: &[u8; 32]) -> String {
    bs58::encode(k).into_string()
}

fn key_of(s: &str) -> Option<[u8; 32]> {
    let v = bs58::decode(s).into_vec().ok()?;
    <[u8; 32]>::try_from(v.as_slice()).ok()
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (h, r) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| DecodeError::new("solana: message truncated"))?;
        self.buf = r;
        Ok(h)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.take(1)?
            .first()
            .copied()
            .ok_or_else(|| DecodeError::new("solana: message truncated"))
    }

    fn key(&mut self) -> Result<[u8; 32], DecodeError> {
        <[u8; 32]>::try_from(self.take(32)?)
            .map_err(|_| DecodeError::new("solana: message truncated"))
    }

    /// compact-u16, canonical encoding only.
    fn shortvec(&mut self) -> Result<usize, DecodeError> {
        let mut v: usize = 0;
        for i in 0..3 {
            let b = self.u8()?;
            v |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::new("solana: non-canonical shortvec"));
                }
                if v > usize::from(u16::MAX) {
                    return Err(DecodeError::new("solana: shortvec overflow"));
                }
                return Ok(v);
            }
            if i == 2 {
                break;
            }
        }
        Err(DecodeError::new("solana: shortvec too long"))
    }
}

struct Instruction<'a> {
    program: u8,
    accounts: &'a [u8],
    data: &'a [u8],
}

struct Message<'a> {
    version: Option<u8>,
    num_required_signatures: u8,
    keys: Vec<[u8; 32]>,
    blockhash: [u8; 32],
    instructions: Vec<Instruction<'a>>,
    lookups: usize,
}

fn parse_message(buf: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut c = Cursor { buf };
    let first = c.u8()?;
    let (version, num_required_signatures) = if first & 0x80 != 0 {
        let v = first & 0x7f;
        if v != 0 {
            return Err(DecodeError::new(format!(
                "solana: unsupported message version {v}"
            )));
        }
        (Some(v), c.u8()?)
    } else {
        (None, first)
    };
    let _readonly_signed = c.u8()?;
    let _readonly_unsigned = c.u8()?;
    let n_keys = c.shortvec()?;
    let keys = (0..n_keys)
        .map(|_| c.key())
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty()
        || usize::from(num_required_signatures) > keys.len()
        || num_required_signatures == 0
    {
        return Err(DecodeError::new("solana: bad message header"));
    }
    let blockhash = c.key()?;
    let n_ix = c.shortvec()?;
    let mut instructions = Vec::new();
    for _ in 0..n_ix {
        let program = c.u8()?;
        let n_acc = c.shortvec()?;
        let accounts = c.take(n_acc)?;
        let n_data = c.shortvec()?;
        let data = c.take(n_data)?;
        instructions.push(Instruction {
            program,
            accounts,
            data,
        });
    }
    let mut lookups = 0;
    if version.is_some() {
        let n = c.shortvec()?;
        for _ in 0..n {
            c.key()?;
            let w = c.shortvec()?;
            c.take(w)?;
            let r = c.shortvec()?;
            c.take(r)?;
        }
        lookups = n;
    }
    if !c.buf.is_empty() {
        return Err(DecodeError::new(format!(
            "solana: {} trailing bytes after the message",
            c.buf.len()
        )));
    }
    Ok(Message {
        version,
        num_required_signatures,
        keys,
        blockhash,
        instructions,
        lookups,
    })
}

/// Accepts a bare message, or an unsigned wire transaction around it.
fn split_message(bytes: &[u8]) -> Result<(&[u8], Message<'_>), DecodeError> {
    match parse_message(bytes) {
        Ok(m) => Ok((bytes, m)),
        Err(first_err) => {
            let mut c = Cursor { buf: bytes };
            let wrapped = (|| {
                let n = c.shortvec()?;
                c.take(
                    n.checked_mul(64)
                        .ok_or_else(|| DecodeError::new("solana: overflow"))?,
                )?;
                let msg = c.buf;
                let m = parse_message(msg)?;
                if usize::from(m.num_required_signatures) != n {
                    return Err(DecodeError::new(
                        "solana: signature count does not match the header",
                    ));
                }
                Ok((msg, m))
            })();
            wrapped.map_err(|_| first_err)
        }
    }
}

/// Decodes a Solana message and its transfers.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let (msg_bytes, m) = split_message(bytes)?;
    let mut d = Decoded {
        kind: if m.version.is_some() {
            "solana_v0"
        } else {
            "solana_legacy"
        }
        .to_owned(),
        signing_hashes: vec![hex0x(msg_bytes)],
        address_eq: AddressEq::Exact,
        ..Decoded::default()
    };
    let fee_payer = m.keys.first().map(b58);
    d.authorities.extend(fee_payer.clone());
    d.facts.insert("fee_payer".into(), json!(fee_payer));
    d.facts
        .insert("recent_blockhash".into(), json!(b58(&m.blockhash)));
    d.facts
        .insert("instruction_count".into(), json!(m.instructions.len()));
    d.facts
        .insert("address_table_lookups".into(), json!(m.lookups));
    d.facts.insert(
        "num_required_signatures".into(),
        json!(m.num_required_signatures),
    );

    let key = |i: Option<&u8>| i.and_then(|i| m.keys.get(usize::from(*i)));
    let token_program = key_of(TOKEN_PROGRAM);
    let token_2022 = key_of(TOKEN_2022_PROGRAM);
    let ata_program = key_of(ATA_PROGRAM);
    // Accounts created by the Associated Token Account program: each costs
    // the payer rent that the new account's owner can reclaim, so one is
    // allowed only for the token account a transfer here pays.
    let mut ata_created: Vec<[u8; 32]> = Vec::new();
    let benign: Vec<[u8; 32]> = [MEMO_PROGRAMS[0], MEMO_PROGRAMS[1]]
        .iter()
        .filter_map(|s| key_of(s))
        .collect();
    let compute_budget = key_of(COMPUTE_BUDGET_PROGRAM);

    let mut transfers = Vec::new();
    let mut other: Option<String> = None;
    let mut fees = serde_json::Map::new();
    let mut budget_tags = std::collections::BTreeSet::new();
    let mut cu_limit: Option<u32> = None;
    let mut cu_price: u64 = 0;
    let mut non_budget_instructions: u64 = 0;
    for ix in &m.instructions {
        if m.keys.get(usize::from(ix.program)) != compute_budget.as_ref() {
            non_budget_instructions = non_budget_instructions.saturating_add(1);
        }
        let Some(program) = m.keys.get(usize::from(ix.program)) else {
            other.get_or_insert_with(|| {
                "an instruction whose program comes from an address lookup table".into()
            });
            continue;
        };
        let acc = |n: usize| key(ix.accounts.get(n));
        if *program == SYSTEM_PROGRAM {
            // SystemInstruction::Transfer = 2u32 LE, then lamports u64 LE.
            match (ix.data.get(..4), ix.data.get(4..12), ix.data.len(), acc(1)) {
                (Some([2, 0, 0, 0]), Some(l), 12, Some(to)) => {
                    let lamports = u64::from_le_bytes(l.try_into().unwrap_or([0; 8]));
                    match acc(0) {
                        Some(from) => push_unique(&mut d.authorities, b58(from)),
                        None => {
                            other.get_or_insert_with(|| {
                                "a transfer without a source account".into()
                            });
                        }
                    }
                    transfers.push(Transfer {
                        recipient: b58(to),
                        amount: lamports.to_string(),
                        asset: Asset::Native,
                        spl: None,
                    });
                }
                _ => {
                    other.get_or_insert_with(|| {
                        "a System Program instruction other than transfer".into()
                    });
                }
            }
        } else if Some(*program) == token_program || Some(*program) == token_2022 {
            match spl_transfer(ix, program, &acc) {
                Some((t, tt, owner)) => {
                    push_unique(&mut d.authorities, b58(owner));
                    transfers.push(t);
                    d.token_transfer.get_or_insert(tt);
                }
                None => {
                    other.get_or_insert_with(|| {
                        "a token program instruction other than transfer".into()
                    });
                }
            }
        } else if Some(*program) == compute_budget {
            // SetComputeUnitLimit = 2 (u32), SetComputeUnitPrice = 3 (u64
            // micro-lamports). The runtime refuses a repeated one; refusing
            // it here too keeps "which one counts" out of the question.
            let tag = ix.data.first().copied();
            if matches!(tag, Some(2 | 3)) && !budget_tags.insert(tag) {
                return Err(DecodeError::new(
                    "solana: a compute budget instruction appears twice",
                ));
            }
            match (ix.data.first(), ix.data.len()) {
                (Some(2), 5) => {
                    let v = ix
                        .data
                        .get(1..5)
                        .and_then(|s| <[u8; 4]>::try_from(s).ok())
                        .map(u32::from_le_bytes);
                    cu_limit = v;
                    fees.insert(
                        "compute_unit_limit".into(),
                        json!(v.unwrap_or(0).to_string()),
                    );
                }
                (Some(3), 9) => {
                    let v = ix
                        .data
                        .get(1..9)
                        .and_then(|s| <[u8; 8]>::try_from(s).ok())
                        .map(u64::from_le_bytes);
                    cu_price = v.unwrap_or(0);
                    fees.insert(
                        "compute_unit_price_micro_lamports".into(),
                        json!(v.unwrap_or(0).to_string()),
                    );
                }
                _ => {}
            }
        } else if Some(*program) == ata_program {
            // Create (no data / 0) and CreateIdempotent (1): funding account,
            // associated token account, owner, mint, system, token program.
            match (ix.data.first(), ix.data.len(), acc(0), acc(1)) {
                (None | Some(0 | 1), 0..=1, Some(funder), Some(ata)) => {
                    push_unique(&mut d.authorities, b58(funder));
                    ata_created.push(*ata);
                }
                _ => {
                    other.get_or_insert_with(|| {
                        "an associated token account instruction other than create".into()
                    });
                }
            }
        } else if !benign.contains(program) {
            other.get_or_insert_with(|| format!("an instruction for program {}", b58(program)));
        }
    }
    d.facts
        .insert("fees".into(), serde_json::Value::Object(fees));
    d.max_fee = Some(max_fee(
        m.num_required_signatures,
        cu_limit,
        cu_price,
        non_budget_instructions,
    ));
    if let Some(extra) = ata_created.iter().find(|a| {
        !transfers
            .iter()
            .any(|t| t.spl.as_ref().is_some_and(|s| s.token_account == **a))
    }) {
        other.get_or_insert_with(|| {
            format!(
                "the creation of token account {} that no transfer here pays",
                b58(extra)
            )
        });
    }
    d.recipients = transfers.clone();
    d.action = match other {
        Some(what) => Action::Other(what),
        None if transfers.is_empty() => Action::Nothing,
        None => Action::Transfers(transfers),
    };
    Ok(d)
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// Lamports per signature (the base fee).
const LAMPORTS_PER_SIGNATURE: u64 = 5_000;
/// Compute units granted per instruction when no limit is set, and the
/// most a transaction can request.
const DEFAULT_UNITS_PER_INSTRUCTION: u64 = 200_000;
const MAX_UNITS: u64 = 1_400_000;

/// Base fee plus the priority fee at the requested (or default) compute unit
/// limit, rounded up as the runtime rounds it.
fn max_fee(signatures: u8, cu_limit: Option<u32>, cu_price: u64, instructions: u64) -> U256 {
    let units = cu_limit.map_or_else(
        || {
            instructions
                .saturating_mul(DEFAULT_UNITS_PER_INSTRUCTION)
                .min(MAX_UNITS)
        },
        |l| u64::from(l).min(MAX_UNITS),
    );
    let micro = U256::from(units).saturating_mul(U256::from(cu_price));
    let million = U256::from(1_000_000u64);
    let priority = micro.div_ceil(million);
    U256::from(u64::from(signatures).saturating_mul(LAMPORTS_PER_SIGNATURE))
        .saturating_add(priority)
}

/// SPL Token `Transfer` (3: source, destination, owner) and
/// `TransferChecked` (12: source, mint, destination, owner).
fn spl_transfer<'k>(
    ix: &Instruction<'_>,
    program: &[u8; 32],
    acc: &dyn Fn(usize) -> Option<&'k [u8; 32]>,
) -> Option<(Transfer, TokenTransfer, &'k [u8; 32])> {
    let amount = u64::from_le_bytes(ix.data.get(1..9)?.try_into().ok()?);
    let (method, src, mint, dst, decimals, owner) = match (ix.data.first()?, ix.data.len()) {
        (3, 9) => ("transfer", acc(0)?, None, acc(1)?, None, acc(2)?),
        (12, 10) => (
            "transferChecked",
            acc(0)?,
            Some(*acc(1)?),
            acc(2)?,
            ix.data.get(9).copied(),
            acc(3)?,
        ),
        _ => return None,
    };
    let asset = mint
        .as_ref()
        .map_or(Asset::UnknownToken, |m| Asset::Token(b58(m)));
    let t = Transfer {
        recipient: b58(dst),
        amount: amount.to_string(),
        asset,
        spl: Some(SplDest {
            mint,
            token_program: *program,
            token_account: *dst,
            decimals,
        }),
    };
    let tt = TokenTransfer {
        standard: "spl",
        method,
        contract: mint.as_ref().map(b58),
        from: Some(b58(src)),
        recipient: b58(dst),
        amount: amount.to_string(),
    };
    Some((t, tt, owner))
}

/// True when `owner` (base58) is the owner whose associated token account
/// for the transfer's mint is the destination token account.
pub(crate) fn ata_matches(spl: &SplDest, owner: &str) -> bool {
    let (Some(mint), Some(owner), Some(ata_program)) =
        (spl.mint, key_of(owner), key_of(ATA_PROGRAM))
    else {
        return false;
    };
    find_program_address(&[&owner, &spl.token_program, &mint], &ata_program)
        == Some(spl.token_account)
}

/// Solana's `find_program_address`: the first bump from 255 down whose
/// address is off the ed25519 curve.
fn find_program_address(seeds: &[&[u8]], program: &[u8; 32]) -> Option<[u8; 32]> {
    (0..=255u8).rev().find_map(|bump| {
        let mut h = Sha256::new();
        for s in seeds {
            h.update(s);
        }
        h.update([bump]);
        h.update(program);
        h.update(b"ProgramDerivedAddress");
        let out: [u8; 32] = h.finalize().into();
        let on_curve = CompressedEdwardsY(out).decompress().is_some();
        (!on_curve).then_some(out)
    })
}
