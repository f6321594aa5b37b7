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
            // The runtime reads system instructions with bincode, which
            // ignores trailing bytes: a transfer with more than 12 bytes still
            // moves its lamports. Only the exact form is admitted.
            match system_transfer(ix.data) {
                Ok(lamports) => {
                    let (Some(from), Some(to)) = (acc(0), acc(1)) else {
                        other.get_or_insert_with(|| {
                            lookup_or_missing(ix, m.keys.len(), "System Program transfer")
                        });
                        continue;
                    };
                    push_unique(&mut d.authorities, b58(from));
                    transfers.push(Transfer {
                        recipient: b58(to),
                        amount: lamports.to_string(),
                        asset: Asset::Native,
                        spl: None,
                    });
                }
                Err(what) => {
                    other.get_or_insert(what);
                }
            }
        } else if Some(*program) == token_program || Some(*program) == token_2022 {
            match spl_transfer(ix, program, &acc) {
                Ok((t, tt, owner)) => {
                    push_unique(&mut d.authorities, b58(owner));
                    transfers.push(t);
                    d.token_transfer.get_or_insert(tt);
                }
                Err(SplRefusal::Accounts) => {
                    other.get_or_insert_with(|| {
                        lookup_or_missing(ix, m.keys.len(), "token transfer")
                    });
                }
                Err(SplRefusal::Data(what)) => {
                    other.get_or_insert(what);
                }
            }
        } else if Some(*program) == compute_budget {
            // The runtime decodes compute-budget instructions with borsh
            // without requiring the data to be consumed, so a price with
            // bytes appended is still charged. Anything but the exact form of
            // an instruction read below would make the fee computed here
            // differ from the fee the chain charges: refused outright.
            let tag = ix.data.first().copied();
            if matches!(tag, Some(1..=4)) && !budget_tags.insert(tag) {
                return Err(DecodeError::new(
                    "solana: a compute budget instruction appears twice",
                ));
            }
            match compute_budget_ix(ix.data)? {
                Budget::UnitLimit(v) => {
                    cu_limit = Some(v);
                    fees.insert("compute_unit_limit".into(), json!(v.to_string()));
                }
                Budget::UnitPrice(v) => {
                    cu_price = v;
                    fees.insert(
                        "compute_unit_price_micro_lamports".into(),
                        json!(v.to_string()),
                    );
                }
                Budget::NoFeeEffect => {}
            }
        } else if Some(*program) == ata_program {
            // Create (no data / 0) and CreateIdempotent (1): funding account,
            // associated token account, owner, mint, system, token program.
            // The program reads its instruction with borsh's full-consumption
            // `try_from_slice` (empty data is Create): exactly these forms.
            match (ix.data, acc(0), acc(1)) {
                ([] | [0 | 1], Some(funder), Some(ata)) => {
                    push_unique(&mut d.authorities, b58(funder));
                    ata_created.push(*ata);
                }
                ([] | [0 | 1], _, _) => {
                    other.get_or_insert_with(|| {
                        lookup_or_missing(ix, m.keys.len(), "token account creation")
                    });
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

/// Why an instruction of the token program is not admitted.
enum SplRefusal {
    /// A transfer whose accounts are missing or come from a lookup table.
    Accounts,
    /// Any other instruction, or a transfer not in its exact form.
    Data(String),
}

/// SPL Token `Transfer` (3: source, destination, owner) and
/// `TransferChecked` (12: source, mint, destination, owner). The token
/// programs read the amount (and decimals) and ignore what follows, so a
/// transfer with bytes appended still moves its amount: only the exact
/// lengths are admitted.
fn spl_transfer<'k>(
    ix: &Instruction<'_>,
    program: &[u8; 32],
    acc: &dyn Fn(usize) -> Option<&'k [u8; 32]>,
) -> Result<(Transfer, TokenTransfer, &'k [u8; 32]), SplRefusal> {
    let tag = ix.data.first().copied();
    let exact = match tag {
        Some(3) => 9,
        Some(12) => 10,
        Some(t) => {
            return Err(SplRefusal::Data(format!(
                "a token program instruction other than transfer ({})",
                spl_name(t)
            )));
        }
        None => {
            return Err(SplRefusal::Data(
                "a token program instruction without data".into(),
            ));
        }
    };
    if ix.data.len() != exact {
        return Err(SplRefusal::Data(format!(
            "a token {} with {} data bytes (exactly {exact} are admitted; the program ignores the rest)",
            if exact == 9 {
                "Transfer"
            } else {
                "TransferChecked"
            },
            ix.data.len()
        )));
    }
    let amount = ix
        .data
        .get(1..9)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
        .ok_or(SplRefusal::Accounts)?;
    let parts = if exact == 9 {
        (|| Some(("transfer", acc(0)?, None, acc(1)?, None, acc(2)?)))()
    } else {
        (|| {
            Some((
                "transferChecked",
                acc(0)?,
                Some(*acc(1)?),
                acc(2)?,
                ix.data.get(9).copied(),
                acc(3)?,
            ))
        })()
    };
    let (method, src, mint, dst, decimals, owner) = parts.ok_or(SplRefusal::Accounts)?;
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
    Ok((t, tt, owner))
}

fn spl_name(tag: u8) -> String {
    let name = match tag {
        0 => "InitializeMint",
        1 => "InitializeAccount",
        2 => "InitializeMultisig",
        4 => "Approve",
        5 => "Revoke",
        6 => "SetAuthority",
        7 => "MintTo",
        8 => "Burn",
        9 => "CloseAccount",
        10 => "FreezeAccount",
        11 => "ThawAccount",
        13 => "ApproveChecked",
        14 => "MintToChecked",
        15 => "BurnChecked",
        _ => return format!("instruction {tag}"),
    };
    name.to_owned()
}

/// SystemInstruction::Transfer is 2u32 LE, then lamports u64 LE. The
/// runtime's bincode ignores trailing bytes; this admits exactly 12.
fn system_transfer(data: &[u8]) -> Result<u64, String> {
    let tag = data
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes);
    match tag {
        Some(2) if data.len() == 12 => data
            .get(4..12)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| "a System Program transfer without its amount".to_owned()),
        Some(2) => Err(format!(
            "a System Program transfer with {} data bytes (exactly 12 are admitted; the runtime ignores the rest)",
            data.len()
        )),
        Some(t) => Err(format!(
            "a System Program instruction other than transfer ({})",
            system_name(t)
        )),
        None => Err("a System Program instruction too short to name its kind".into()),
    }
}

fn system_name(tag: u32) -> String {
    let name = match tag {
        0 => "CreateAccount",
        1 => "Assign",
        3 => "CreateAccountWithSeed",
        4 => "AdvanceNonceAccount",
        5 => "WithdrawNonceAccount",
        6 => "InitializeNonceAccount",
        7 => "AuthorizeNonceAccount",
        8 => "Allocate",
        9 => "AllocateWithSeed",
        10 => "AssignWithSeed",
        11 => "TransferWithSeed",
        12 => "UpgradeNonceAccount",
        _ => return format!("instruction {tag}"),
    };
    name.to_owned()
}

/// What a compute-budget instruction does to the fee.
enum Budget {
    UnitLimit(u32),
    UnitPrice(u64),
    /// RequestHeapFrame, SetLoadedAccountsDataSizeLimit: no fee of their own
    /// (the heap's cost is charged in compute units, inside the limit).
    NoFeeEffect,
}

/// Exact decoding of ComputeBudgetInstruction (borsh: a u8 tag, then the
/// value). Tag 0 is the retired RequestUnits, which the runtime refuses.
fn compute_budget_ix(data: &[u8]) -> Result<Budget, DecodeError> {
    let (exact, name) = match data.first() {
        Some(1) => (5, "RequestHeapFrame"),
        Some(2) => (5, "SetComputeUnitLimit"),
        Some(3) => (9, "SetComputeUnitPrice"),
        Some(4) => (5, "SetLoadedAccountsDataSizeLimit"),
        Some(t) => {
            return Err(DecodeError::new(format!(
                "solana: unknown compute budget instruction {t}"
            )));
        }
        None => {
            return Err(DecodeError::new(
                "solana: a compute budget instruction without data",
            ));
        }
    };
    if data.len() != exact {
        return Err(DecodeError::new(format!(
            "solana: compute budget {name} has {} data bytes, not {exact} (the runtime would read the value and ignore the rest, or refuse it)",
            data.len()
        )));
    }
    let word = |n: usize| data.get(1..1 + n).unwrap_or_default();
    Ok(match data.first() {
        Some(2) => Budget::UnitLimit(u32::from_le_bytes(
            <[u8; 4]>::try_from(word(4)).map_err(|_| DecodeError::new("solana: truncated"))?,
        )),
        Some(3) => Budget::UnitPrice(u64::from_le_bytes(
            <[u8; 8]>::try_from(word(8)).map_err(|_| DecodeError::new("solana: truncated"))?,
        )),
        _ => Budget::NoFeeEffect,
    })
}

/// The reason for an instruction whose accounts cannot be read: an index
/// past the message's own keys names an account loaded from an address
/// lookup table, which the message alone cannot resolve.
fn lookup_or_missing(ix: &Instruction<'_>, static_keys: usize, what: &str) -> String {
    if ix.accounts.iter().any(|&i| usize::from(i) >= static_keys) {
        format!("a {what} naming an account loaded from an address lookup table")
    } else {
        format!("a {what} with too few accounts")
    }
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

/// The associated token account of `owner` for `mint` under
/// `token_program` (the inverse of [`ata_matches`]), for the encoder that
/// `fixture derive` uses (derive/encode.rs).
pub(crate) fn associated_token_account(
    owner: &[u8; 32],
    token_program: &[u8; 32],
    mint: &[u8; 32],
) -> Option<[u8; 32]> {
    find_program_address(&[owner, token_program, mint], &key_of(ATA_PROGRAM)?)
}

/// Whether `key` is the System Program (derive/encode.rs).
pub(crate) fn is_system_program(key: &[u8; 32]) -> bool {
    *key == SYSTEM_PROGRAM
}

/// Whether `key` is SPL Token or Token-2022 (derive/encode.rs).
pub(crate) fn is_token_program(key: &[u8; 32]) -> bool {
    Some(*key) == key_of(TOKEN_PROGRAM) || Some(*key) == key_of(TOKEN_2022_PROGRAM)
}

/// Whether `key` is the Associated Token Account program (derive/encode.rs).
pub(crate) fn is_ata_program(key: &[u8; 32]) -> bool {
    Some(*key) == key_of(ATA_PROGRAM)
}

#[cfg(test)]
mod props {
    //! Every instruction of a program this decoder knows, with bytes
    //! appended, cut off or its tag changed, is either read exactly as the
    //! runtime reads it or refused. `runtime_*` model the runtime's own
    //! decoders (borsh without full consumption for the compute budget,
    //! bincode allowing trailing bytes for the System Program, the token
    //! program's prefix reads), not this module.

    use proptest::prelude::*;

    use super::*;

    const PAYER: [u8; 32] = [7; 32];
    const RECIPIENT: [u8; 32] = [9; 32];
    const MINT: [u8; 32] = [5; 32];

    /// Keys: payer, recipient (token account too), system, compute
    /// budget, token program, mint.
    fn message(ixs: &[(u8, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let keys: [[u8; 32]; 6] = [
            PAYER,
            RECIPIENT,
            SYSTEM_PROGRAM,
            key_of(COMPUTE_BUDGET_PROGRAM).unwrap(),
            key_of(TOKEN_PROGRAM).unwrap(),
            MINT,
        ];
        let mut m = vec![1, 0, 4, keys.len() as u8];
        keys.iter().for_each(|k| m.extend_from_slice(k));
        m.extend_from_slice(&[3; 32]);
        m.push(ixs.len() as u8);
        for (p, acc, data) in ixs {
            m.push(*p);
            m.push(acc.len() as u8);
            m.extend_from_slice(acc);
            assert!(data.len() < 128);
            m.push(data.len() as u8);
            m.extend_from_slice(data);
        }
        m
    }

    /// (tag, value) as the runtime reads it, or None when it refuses.
    fn runtime_budget(data: &[u8]) -> Option<(u8, u64)> {
        let u32_at = || {
            Some(u64::from(u32::from_le_bytes(
                data.get(1..5)?.try_into().ok()?,
            )))
        };
        match data.first()? {
            t @ (1 | 2 | 4) => Some((*t, u32_at()?)),
            3 => Some((3, u64::from_le_bytes(data.get(1..9)?.try_into().ok()?))),
            _ => None,
        }
    }

    /// Lamports a System instruction moves to the recipient, Some(None)
    /// for another instruction, None when the runtime refuses it.
    fn runtime_system(data: &[u8]) -> Option<Option<u64>> {
        let tag = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
        if tag != 2 {
            return Some(None);
        }
        Some(Some(u64::from_le_bytes(data.get(4..12)?.try_into().ok()?)))
    }

    fn runtime_token(data: &[u8]) -> Option<Option<u64>> {
        let amount = || u64::from_le_bytes(data.get(1..9)?.try_into().ok()?).into();
        match data.first()? {
            3 => Some(amount()),
            12 if data.len() >= 10 => Some(amount()),
            12 => None,
            _ => Some(None),
        }
    }

    fn budget(tag: u8, v: u64) -> Vec<u8> {
        let mut d = vec![tag];
        if tag == 3 {
            d.extend_from_slice(&v.to_le_bytes());
        } else {
            d.extend_from_slice(&(v as u32).to_le_bytes());
        }
        d
    }

    fn mutate(mut data: Vec<u8>, how: u8, extra: &[u8], cut: usize, tag: u8) -> Vec<u8> {
        match how % 3 {
            0 => data.extend_from_slice(extra),
            1 => data.truncate(cut % (data.len() + 1)),
            _ => {
                if let Some(t) = data.first_mut() {
                    *t = tag;
                }
            }
        }
        data
    }

    fn refused(r: &Result<Decoded, DecodeError>) -> bool {
        match r {
            Err(_) => true,
            Ok(d) => !matches!(d.action, Action::Transfers(_)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn mutated_known_instructions_are_read_as_the_runtime_reads_them_or_refused(
            which in 0u8..3, how in 0u8..3, tag in any::<u8>(), cut in any::<usize>(),
            extra in prop::collection::vec(any::<u8>(), 1..12),
            budget_tag in prop::sample::select(vec![1u8, 2, 3, 4]),
            value in any::<u64>(), lamports in any::<u64>(), spl_checked in any::<bool>(),
        ) {
            let value = if budget_tag == 3 { value } else { value & 0xffff_ffff };
            let mut budget_data = budget(budget_tag, value);
            let mut transfer = if spl_checked {
                let mut d = vec![12];
                d.extend_from_slice(&lamports.to_le_bytes());
                d.push(6);
                (4u8, vec![1, 5, 1, 0], d)
            } else {
                let mut d = 2u32.to_le_bytes().to_vec();
                d.extend_from_slice(&lamports.to_le_bytes());
                (2u8, vec![0, 1], d)
            };
            match which {
                0 => budget_data = mutate(budget_data, how, &extra, cut, tag),
                _ => transfer.2 = mutate(transfer.2, how, &extra, cut, tag),
            }
            let appended = how % 3 == 0;
            let r = decode(&message(&[(3, vec![], budget_data.clone()), transfer.clone()]));

            // Appended bytes the runtime would ignore are never accepted.
            if appended {
                prop_assert!(refused(&r), "appended bytes accepted: {:?}", r.as_ref().map(|d| &d.action));
            }
            let Ok(d) = &r else { return Ok(()) };
            let Action::Transfers(ts) = &d.action else { return Ok(()) };

            // Accepted: the runtime must read the same fee and amount.
            let rb = runtime_budget(&budget_data);
            prop_assert!(rb.is_some(), "a budget instruction the runtime refuses was accepted");
            let (rt, rv) = rb.unwrap();
            let units = if rt == 2 { rv.min(MAX_UNITS) } else { DEFAULT_UNITS_PER_INSTRUCTION };
            let price = if rt == 3 { rv } else { 0 };
            let want_fee = U256::from(LAMPORTS_PER_SIGNATURE)
                + (U256::from(units) * U256::from(price)).div_ceil(U256::from(1_000_000u64));
            prop_assert_eq!(d.max_fee, Some(want_fee));
            let moved = if transfer.0 == 2 { runtime_system(&transfer.2) } else { runtime_token(&transfer.2) };
            prop_assert_eq!(ts.len(), 1);
            prop_assert_eq!(moved, Some(Some(ts[0].amount.parse::<u64>().unwrap())));
        }
    }
}
