//! The limit table (`data.velocity.limits`) and matching a request to it.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::Amount;

/// What a running total is kept per: one total per combination of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    Wallet,
    Token,
    Chain,
    Destination,
    Source,
    Initiator,
    Org,
    Vault,
}

impl Dim {
    pub const ALL: [Dim; 8] = [
        Dim::Wallet,
        Dim::Token,
        Dim::Chain,
        Dim::Destination,
        Dim::Source,
        Dim::Initiator,
        Dim::Org,
        Dim::Vault,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dim::Wallet => "wallet",
            Dim::Token => "token",
            Dim::Chain => "chain",
            Dim::Destination => "destination",
            Dim::Source => "source",
            Dim::Initiator => "initiator",
            Dim::Org => "org",
            Dim::Vault => "vault",
        }
    }

    fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub id: String,
    pub request_types: BTreeSet<String>,
    pub chain_ids: Option<BTreeSet<String>>,
    pub token_ids: Option<BTreeSet<String>>,
    pub wallet_ids: Option<BTreeSet<String>>,
    pub destination_types: Option<BTreeSet<String>>,
    /// Requests that pay only these addresses (normalised) do not count:
    /// moves to the operator's own cold storage.
    pub exclude_destinations: BTreeSet<String>,
    pub group_by: Vec<Dim>,
    /// As written (`24h`), for messages.
    pub window: String,
    pub window_ms: i64,
    pub max_amount: Option<Amount>,
    pub max_count: Option<u64>,
}

/// The validated table; empty when `data.velocity` is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub limits: Vec<Limit>,
}

/// Longest window a limit may have; the ledger keeps rows this long.
pub const MAX_WINDOW_MS: i64 = 30 * 24 * 3_600_000;

/// Longest group value kept; longer ones make the group unknown (fail closed)
/// rather than grow keys, messages and the store without bound.
pub const MAX_VALUE_LEN: usize = 256;

const REQUEST_TYPES: [&str; 5] = ["PING", "KEYGEN", "KEYSIGN", "KEYRESHARE", "KEYSHARESIGN"];

/// Parses `1h`, `24h`, `7d`, `90s`, `30m` into milliseconds.
pub fn parse_window(s: &str) -> Option<i64> {
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    if n <= 0 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

impl Limits {
    /// Reads `data.velocity`. Errors read `velocity.limits.<id>: <reason>`
    /// (or `velocity.limits[<i>]` before the id is known).
    pub fn from_data(velocity: Option<&Value>) -> Result<Limits, String> {
        let Some(v) = velocity else {
            return Ok(Limits::default());
        };
        let obj = v
            .as_object()
            .ok_or("velocity: must be an object with a `limits` list")?;
        for k in obj.keys() {
            if k != "limits" {
                return Err(format!("velocity: unknown key `{k}` (only `limits`)"));
            }
        }
        let Some(list) = obj.get("limits") else {
            return Ok(Limits::default());
        };
        let list = list
            .as_array()
            .ok_or("velocity.limits: must be a list of limits")?;
        let mut seen = BTreeSet::new();
        let mut limits = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let l = parse_limit(i, item)?;
            if !seen.insert(l.id.clone()) {
                return Err(format!("velocity.limits.{}: the id is used twice", l.id));
            }
            limits.push(l);
        }
        Ok(Limits { limits })
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Every (limit, group) `input` falls under, in table order.
    pub fn matches(&self, input: &Value) -> Vec<Matched> {
        if self.limits.is_empty() {
            return Vec::new();
        }
        let req = RequestView::of(input);
        let mut out = Vec::new();
        for (i, l) in self.limits.iter().enumerate() {
            if req.matches(l) {
                req.groups(i, l, &mut out);
            }
        }
        out
    }
}

fn parse_limit(i: usize, item: &Value) -> Result<Limit, String> {
    let obj = item
        .as_object()
        .ok_or_else(|| format!("velocity.limits[{i}]: must be an object"))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(format!(
                "velocity.limits.{s}: `id` must match [a-z][a-z0-9_]{{0,63}} (it becomes a metric label)"
            ));
        }
        _ => return Err(format!("velocity.limits[{i}]: `id` (a string) is required")),
    };
    let err = |reason: String| format!("velocity.limits.{id}: {reason}");
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "id" | "match" | "group_by" | "window" | "max_amount" | "max_count" | "description"
        ) {
            return Err(err(format!(
                "unknown key `{k}` (id, match, group_by, window, max_amount, max_count, description)"
            )));
        }
    }
    let empty = Map::new();
    let m = match obj.get("match") {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err("`match` must be an object".into())),
    };
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "request_types"
                | "chain_ids"
                | "token_ids"
                | "wallet_ids"
                | "destination_types"
                | "exclude_destinations"
        ) {
            return Err(err(format!(
                "unknown key `match.{k}` (request_types, chain_ids, token_ids, wallet_ids, destination_types, exclude_destinations)"
            )));
        }
    }
    let set = |key: &str| -> Result<Option<BTreeSet<String>>, String> {
        match m.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| err(format!("`match.{key}` must list strings")))
                })
                .collect::<Result<BTreeSet<_>, _>>()
                .map(Some),
            Some(_) => Err(err(format!(
                "`match.{key}` must be a non-empty list of strings"
            ))),
        }
    };
    let request_types = set("request_types")?.unwrap_or_else(|| ["KEYSIGN".to_owned()].into());
    if let Some(t) = request_types
        .iter()
        .find(|t| !REQUEST_TYPES.contains(&t.as_str()))
    {
        return Err(err(format!(
            "`match.request_types`: unknown type `{t}` (PING, KEYGEN, KEYSIGN, KEYRESHARE, KEYSHARESIGN)"
        )));
    }
    // The rules that turn facts into denials live in tss.keysign: a limit
    // on another type would be computed and never enforced (fail open).
    if let Some(t) = request_types.iter().find(|t| *t != "KEYSIGN") {
        return Err(err(format!(
            "`match.request_types`: `{t}` cannot be limited; spending limits apply to KEYSIGN only"
        )));
    }
    let token_ids = set("token_ids")?;
    let group_by = match obj.get("group_by") {
        None => Vec::new(),
        Some(Value::Array(a)) => {
            let mut dims = Vec::new();
            for v in a {
                let d = v.as_str().and_then(Dim::parse).ok_or_else(|| {
                    err(format!(
                        "`group_by`: `{v}` is not one of wallet, token, chain, destination, source, initiator, org, vault"
                    ))
                })?;
                if dims.contains(&d) {
                    return Err(err(format!("`group_by` names `{}` twice", d.name())));
                }
                dims.push(d);
            }
            dims
        }
        Some(_) => return Err(err("`group_by` must be a list".into())),
    };
    let window = match obj.get("window") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(err("`window` (e.g. \"24h\") is required".into())),
    };
    let window_ms = parse_window(&window)
        .filter(|ms| (1_000..=MAX_WINDOW_MS).contains(ms))
        .ok_or_else(|| {
            err(format!(
                "`window` `{window}` is not a duration between 1s and 30d (<n>s, <n>m, <n>h or <n>d)"
            ))
        })?;
    let max_amount = match obj.get("max_amount") {
        None => None,
        Some(Value::String(s)) => Some(
            Amount::parse(s)
                .ok_or_else(|| err(format!("`max_amount` `{s}` is not a plain decimal string")))?,
        ),
        Some(v) => {
            return Err(err(format!(
                "`max_amount` must be a quoted decimal string, not `{v}`"
            )));
        }
    };
    let max_count = match obj.get("max_count") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| err(format!("`max_count` must be a whole number, not `{v}`")))?,
        ),
    };
    if max_amount.is_none() && max_count.is_none() {
        return Err(err("set `max_amount`, `max_count` or both".into()));
    }
    if max_amount.is_some() {
        if !request_types.iter().all(|t| t == "KEYSIGN") {
            return Err(err(
                "`max_amount` applies to KEYSIGN only: other request types move no amount".into(),
            ));
        }
        let one_token = token_ids.as_ref().is_some_and(|t| t.len() == 1);
        if !group_by.contains(&Dim::Token) && !one_token {
            return Err(err(
                "`max_amount` is in one token's units: add `token` to `group_by` or name exactly one token in `match.token_ids`"
                    .into(),
            ));
        }
    }
    let exclude_destinations = set("exclude_destinations")?
        .unwrap_or_default()
        .iter()
        .map(|a| normalise_address(a))
        .collect();
    Ok(Limit {
        exclude_destinations,
        chain_ids: set("chain_ids")?,
        wallet_ids: set("wallet_ids")?,
        destination_types: set("destination_types")?,
        id,
        request_types,
        token_ids,
        group_by,
        window,
        window_ms,
        max_amount,
        max_count,
    })
}

fn valid_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_lowercase())
        && s.len() <= 64
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
}

/// One (limit, group) a request falls under.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// Index into [`Limits::limits`].
    pub limit: usize,
    /// `{dim: value}` as the policy sees it.
    pub group: Map<String, Value>,
    /// Injective ledger key: the JSON array of the values in `group_by` order.
    pub key: String,
    /// `wallet=…,token=…`, for messages.
    pub display: String,
    /// This request's amount for the group (None: unreadable).
    pub amount: Option<Amount>,
    pub token: String,
    /// Why the group could not be determined; the request must not pass.
    pub error: Option<String>,
}

/// The request fields limits look at, read once.
struct RequestView<'a> {
    request_type: &'a str,
    chain: Option<&'a str>,
    token: Option<&'a str>,
    wallet: Result<Option<&'a str>, String>,
    destination_type: Option<&'a str>,
    /// (normalised address, amount) per output; None address = missing.
    outputs: Vec<(Option<String>, Option<Amount>)>,
    /// Amounts not tied to an address (wallet-to-wallet `destination.amount`).
    loose: Vec<Option<Amount>>,
    source: Option<String>,
    initiator: Option<&'a str>,
    org: Option<&'a str>,
    vault: Option<&'a str>,
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// One spelling per address: EVM hex is case-insensitive and its `0x` is
/// optional (the integrity rules accept either spelling against the raw
/// transaction), bech32 is case-insensitive, so each of those becomes one
/// group; base58 (TRON, Solana, legacy Bitcoin) is case-sensitive and kept
/// as is.
pub fn normalise_address(a: &str) -> String {
    let body = a
        .strip_prefix("0x")
        .or_else(|| a.strip_prefix("0X"))
        .unwrap_or(a);
    if body.len() == 40 && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return format!("0x{}", body.to_ascii_lowercase());
    }
    let lower = a.to_ascii_lowercase();
    if lower.starts_with("0x")
        || lower.starts_with("bc1")
        || lower.starts_with("tb1")
        || lower.starts_with("bcrt1")
    {
        lower
    } else {
        a.to_owned()
    }
}

/// The token account an SPL transfer pays, from the signed bytes
/// (`input.derived`), when the request is one such transfer.
fn spl_token_account(input: &Value) -> Option<String> {
    let d = input.get("derived")?;
    let t = d.get("token_transfer")?;
    if d.get("family")?.as_str()? != "solana" || t.get("standard")?.as_str()? != "spl" {
        return None;
    }
    if d.get("recipients")?.as_array()?.len() != 1 {
        return None;
    }
    t.get("recipient")?.as_str().map(normalise_address)
}

/// One output of a request: (normalised address, amount); None = missing.
type Output = (Option<String>, Option<Amount>);

/// What an `EVM_Contract` call counts, from the facts decoded from its
/// signed bytes (`input.derived.call`): a token approval counts as a
/// transfer of that token to the spender, of the whole allowance (the
/// spender can move it later without another signature; unlimited or with
/// native value attached: unknown, so an amount limit denies it); any other
/// decoded call counts its native `value`, the description's, which the
/// integrity rules prove equal to the bytes'. Returns the token id to count
/// under (None: the request's) and the output; None when no call was decoded.
fn call_output<'a>(input: &'a Value, dest: &Value) -> Option<(Option<&'a str>, Output)> {
    if text(dest, &["destination_type"]) != Some("EVM_Contract") {
        return None;
    }
    let call = at(input, &["derived", "call"]).filter(|c| c.is_object())?;
    let contract = text(call, &["contract"]).map(normalise_address);
    match call.get("approval").filter(|a| a.is_object()) {
        Some(a) => {
            // A token the tables do not know counts as nothing known.
            let token_id = text(a, &["token_id"]);
            let counted = token_id.is_some()
                && a.get("unlimited") == Some(&Value::Bool(false))
                && text(call, &["value"]) == Some("0");
            Some((
                token_id,
                (
                    text(a, &["spender"]).map(normalise_address),
                    amount_of(a.get("amount_units")).filter(|_| counted),
                ),
            ))
        }
        None => Some((None, (contract, amount_of(dest.get("value"))))),
    }
}

fn amount_of(v: Option<&Value>) -> Option<Amount> {
    v.and_then(Value::as_str).and_then(Amount::parse)
}

impl<'a> RequestView<'a> {
    fn of(input: &'a Value) -> Self {
        let tx = at(input, &["extra", "transaction"]).unwrap_or(&Value::Null);
        let dest = tx.get("destination").unwrap_or(&Value::Null);
        // The three places a wallet id is sent must agree: grouping by one
        // while the policy checked another would let a request pick its
        // running total.
        let ids = [
            text(input, &["extra", "wallet", "wallet_id"]),
            text(tx, &["wallet_id"]),
            text(tx, &["source", "wallet_id"]),
        ];
        let present: BTreeSet<&str> = ids.iter().flatten().copied().collect();
        let wallet = match present.len() {
            0 => Ok(None),
            1 => Ok(present.into_iter().next()),
            _ => Err(format!(
                "the request names {} different wallet ids",
                present.len()
            )),
        };
        let mut outputs = Vec::new();
        let out = |o: &Value| {
            (
                o.get("address")
                    .and_then(Value::as_str)
                    .map(normalise_address),
                amount_of(o.get("amount")),
            )
        };
        if let Some(o) = dest.get("account_output") {
            outputs.push(out(o));
        }
        if let Some(list) = dest.get("utxo_outputs") {
            match list.as_array() {
                Some(a) => outputs.extend(a.iter().map(out)),
                None => outputs.push((None, None)),
            }
        }
        // An SPL payment may be described by its owner's wallet address or by
        // the token account it pays (both agree with the bytes); grouping by
        // the spelling would give one recipient two running totals. The
        // token account the signed bytes pay is the one spelling both share.
        if let ([first], Some(account)) = (outputs.as_mut_slice(), spl_token_account(input)) {
            first.0 = Some(account);
        }
        let mut token = text(tx, &["token_id"]);
        if let Some(a) = dest.get("address") {
            match call_output(input, dest) {
                Some((call_token, output)) => {
                    token = call_token.or(token);
                    outputs.push(output);
                }
                // A contract call whose calldata was not decoded through a
                // pinned ABI: what it moves is unknown, so an amount limit
                // denies it rather than count it as zero.
                None => outputs.push((a.as_str().map(normalise_address), None)),
            }
        }
        let loose = dest
            .get("amount")
            .map(|a| vec![amount_of(Some(a))])
            .unwrap_or_default();
        RequestView {
            request_type: input
                .get("request_type")
                .and_then(Value::as_str)
                .unwrap_or(""),
            chain: text(tx, &["chain_id"]),
            token,
            wallet,
            destination_type: text(dest, &["destination_type"]),
            outputs,
            loose,
            source: text(tx, &["source", "address"]).map(normalise_address),
            initiator: text(tx, &["initiator"]),
            org: text(input, &["extra", "org", "org_id"]),
            vault: text(input, &["extra", "vault", "vault_id"]),
        }
    }

    fn matches(&self, l: &Limit) -> bool {
        // A field the request leaves out (or sends as a non-string) matches
        // every filter: leaving a field out must never escape a limit. The
        // limit then holds the request, and if it groups by that field the
        // group is unknown and the request is denied.
        let within = |set: &Option<BTreeSet<String>>, v: Option<&str>| match (set, v) {
            (None, _) | (_, None) => true,
            (Some(set), Some(v)) => set.contains(v),
        };
        let wallet = self.wallet.as_ref().ok().copied().flatten();
        l.request_types.contains(self.request_type)
            && within(&l.chain_ids, self.chain)
            && within(&l.token_ids, self.token)
            // Disagreeing wallet ids match any wallet filter: the request
            // is then held (and denied) rather than let through unlimited.
            && (self.wallet.is_err() || within(&l.wallet_ids, wallet))
            && within(&l.destination_types, self.destination_type)
            && !self.pays_only(&l.exclude_destinations)
    }

    /// Every output names an address in `set` (and there is one at least).
    fn pays_only(&self, set: &BTreeSet<String>) -> bool {
        !set.is_empty()
            && !self.outputs.is_empty()
            && self.loose.is_empty()
            && self
                .outputs
                .iter()
                .all(|(a, _)| a.as_ref().is_some_and(|a| set.contains(a)))
    }

    /// The whole amount the transaction moves, or None if any part is unreadable.
    fn total(&self) -> Option<Amount> {
        let parts = self
            .outputs
            .iter()
            .map(|o| o.1)
            .chain(self.loose.iter().copied());
        let mut sum = Amount::ZERO;
        let mut any = false;
        for p in parts {
            sum = sum.checked_add(p?)?;
            any = true;
        }
        any.then_some(sum)
    }

    fn value(&self, d: Dim) -> Result<Option<String>, String> {
        let v = match d {
            Dim::Wallet => self.wallet.clone()?.map(str::to_owned),
            Dim::Token => self.token.map(str::to_owned),
            Dim::Chain => self.chain.map(str::to_owned),
            Dim::Source => self.source.clone(),
            Dim::Initiator => self.initiator.map(str::to_owned),
            Dim::Org => self.org.map(str::to_owned),
            Dim::Vault => self.vault.map(str::to_owned),
            Dim::Destination => unreachable!("destinations are expanded per output"),
        };
        Ok(v)
    }

    fn groups(&self, i: usize, l: &Limit, out: &mut Vec<Matched>) {
        let mut base = Vec::new();
        let mut error = None;
        for &d in &l.group_by {
            if d == Dim::Destination {
                base.push((d, String::new()));
                continue;
            }
            match self.value(d) {
                Ok(Some(v)) if v.len() <= MAX_VALUE_LEN => base.push((d, v)),
                Ok(Some(_)) => {
                    error.get_or_insert(format!(
                        "`{}` is longer than {MAX_VALUE_LEN} characters",
                        d.name()
                    ));
                    base.push((d, String::new()));
                }
                Ok(None) => {
                    error.get_or_insert(format!("the request names no `{}`", d.name()));
                    base.push((d, String::new()));
                }
                Err(e) => {
                    error.get_or_insert(e);
                    base.push((d, String::new()));
                }
            }
        }
        let token = self.token.unwrap_or("").to_owned();
        if !l.group_by.contains(&Dim::Destination) {
            out.push(matched(i, &base, self.total(), token, error));
            return;
        }
        // One group per destination address, with that address's share.
        let mut per: Vec<(String, Option<Amount>)> = Vec::new();
        let mut dest_error = None;
        for (addr, amount) in &self.outputs {
            match addr {
                Some(a) if a.len() <= MAX_VALUE_LEN => match per.iter_mut().find(|p| &p.0 == a) {
                    Some(p) => p.1 = p.1.zip(*amount).and_then(|(x, y)| x.checked_add(y)),
                    None => per.push((a.clone(), *amount)),
                },
                _ => {
                    dest_error
                        .get_or_insert("a destination output has no usable address".to_owned());
                }
            }
        }
        if per.is_empty() {
            dest_error.get_or_insert("the request names no destination address".to_owned());
            per.push((String::new(), None));
        }
        let error = error.or(dest_error);
        for (addr, amount) in per {
            let vals: Vec<(Dim, String)> = base
                .iter()
                .map(|(d, v)| {
                    (
                        *d,
                        if *d == Dim::Destination {
                            addr.clone()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect();
            out.push(matched(i, &vals, amount, token.clone(), error.clone()));
        }
    }
}

fn matched(
    limit: usize,
    vals: &[(Dim, String)],
    amount: Option<Amount>,
    token: String,
    error: Option<String>,
) -> Matched {
    let mut group = Map::new();
    for (d, v) in vals {
        group.insert(d.name().to_owned(), Value::String(v.clone()));
    }
    let values: Vec<&str> = vals.iter().map(|(_, v)| v.as_str()).collect();
    let key = serde_json::to_string(&values).unwrap_or_default();
    let display = if vals.is_empty() {
        "all".to_owned()
    } else {
        vals.iter()
            .map(|(d, v)| format!("{}={v}", d.name()))
            .collect::<Vec<_>>()
            .join(",")
    };
    Matched {
        limit,
        group,
        key,
        display,
        amount,
        token,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(v: Value) -> Result<Limits, String> {
        Limits::from_data(Some(&json!({ "limits": v })))
    }

    fn input(tx: Value) -> Value {
        json!({
            "request_type": "KEYSIGN",
            "extra": {
                "wallet": {"wallet_id": "w1"},
                "org": {"org_id": "o1"},
                "vault": {"vault_id": "v1"},
                "transaction": tx,
            }
        })
    }

    fn usdt_tx(outputs: Value) -> Value {
        json!({
            "wallet_id": "w1", "chain_id": "ETH", "token_id": "ETH_USDT",
            "source": {"wallet_id": "w1", "address": "0xAbC0000000000000000000000000000000000001"},
            "initiator": "ops@x",
            "destination": {"destination_type": "Address", "utxo_outputs": outputs},
        })
    }

    #[test]
    fn bad_limits_are_refused_with_their_id_and_reason() {
        let cases = [
            (
                json!([{"id": "Bad-Id", "window": "1h", "max_count": 1}]),
                "velocity.limits.Bad-Id",
            ),
            (
                json!([{"window": "1h", "max_count": 1}]),
                "velocity.limits[0]: `id`",
            ),
            (
                json!([{"id": "a", "window": "1h"}]),
                "set `max_amount`, `max_count` or both",
            ),
            (
                json!([{"id": "a", "window": "0h", "max_count": 1}]),
                "`window` `0h`",
            ),
            (
                json!([{"id": "a", "window": "31d", "max_count": 1}]),
                "between 1s and 30d",
            ),
            (
                json!([{"id": "a", "window": "1w", "max_count": 1}]),
                "`window` `1w`",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": -1}]),
                "whole number",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_amount": 5, "group_by": ["token"]}]),
                "quoted decimal",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_amount": "1e3", "group_by": ["token"]}]),
                "plain decimal",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_amount": "5"}]),
                "one token's units",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_amount": "5", "match": {"token_ids": ["A", "B"]}}]),
                "one token's units",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1, "group_by": ["wallet", "wallet"]}]),
                "twice",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1, "group_by": ["walet"]}]),
                "`group_by`",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1, "match": {"token": ["x"]}}]),
                "unknown key `match.token`",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1, "match": {"token_ids": []}}]),
                "non-empty list",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1, "match": {"request_types": ["KEYSING"]}}]),
                "unknown type",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1, "maxcount": 2}]),
                "unknown key `maxcount`",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 1}, {"id": "a", "window": "2h", "max_count": 1}]),
                "used twice",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_amount": "5", "group_by": ["token"], "match": {"request_types": ["KEYGEN"]}}]),
                "KEYSIGN only",
            ),
            (
                json!([{"id": "a", "window": "1h", "max_count": 5, "match": {"request_types": ["KEYSIGN", "KEYGEN"]}}]),
                "KEYSIGN only",
            ),
        ];
        for (v, want) in cases {
            let e = limits(v.clone()).expect_err(&v.to_string());
            assert!(e.contains(want), "{v}: {e}");
        }
        assert!(Limits::from_data(Some(&json!({"limit": []}))).is_err());
        assert!(Limits::from_data(None).unwrap().is_empty());
    }

    #[test]
    fn an_spl_recipient_is_one_group_however_it_is_described() {
        let l = limits(json!([{
            "id": "d", "window": "7d", "group_by": ["destination", "token"], "max_amount": "100"
        }]))
        .unwrap();
        let account = "Q4qRn8Ub5G32b5Leky264EbFeZJggitNG3mSHHCojKx";
        let spl = |described: &str| {
            let mut i = input(json!({
                "wallet_id": "w1", "chain_id": "SOL", "token_id": "SOL_USDC",
                "destination": {"destination_type": "Address",
                    "account_output": {"address": described, "amount": "5"}},
            }));
            i["derived"] = json!({
                "family": "solana",
                "token_transfer": {"standard": "spl", "recipient": account},
                "recipients": [{"address": account, "amount": "5000000"}],
            });
            l.matches(&i)
        };
        let by_owner = spl("5omQJtDUHA3gMFdHEQg1zZSvcBUVzEEBLxN3L8vUQANy");
        let by_account = spl(account);
        assert_eq!(by_owner.len(), 1);
        assert_eq!(by_owner[0].group, by_account[0].group);
        assert_eq!(by_owner[0].group["destination"], account);
        assert_eq!(by_owner[0].amount, Amount::parse("5"));

        // Other families keep the described address.
        let mut evm = input(usdt_tx(
            json!([{"address": "0xdead00000000000000000000000000000000beef", "amount": "1"}]),
        ));
        evm["derived"] = json!({"family": "evm", "token_transfer": {"standard": "erc20", "recipient": "0x1111111111111111111111111111111111111111"}, "recipients": [{}]});
        assert_eq!(
            l.matches(&evm)[0].group["destination"],
            "0xdead00000000000000000000000000000000beef"
        );
    }

    #[test]
    fn groups_come_per_destination_with_each_ones_share() {
        let l = limits(json!([{
            "id": "d", "window": "7d", "group_by": ["destination", "token"], "max_amount": "100"
        }]))
        .unwrap();
        let m = l.matches(&input(usdt_tx(json!([
            {"address": "0xDEAD00000000000000000000000000000000BEEF", "amount": "1.5"},
            {"address": "0xdead00000000000000000000000000000000beef", "amount": "2"},
            {"address": "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf", "amount": "3"},
        ]))));
        assert_eq!(m.len(), 2, "case variants of one EVM address are one group");
        let spellings = l.matches(&input(usdt_tx(json!([
            {"address": "0xDEAD00000000000000000000000000000000BEEF", "amount": "1"},
            {"address": "dead00000000000000000000000000000000beef", "amount": "1"},
            {"address": "0Xdead00000000000000000000000000000000BEEF", "amount": "1"},
            {"address": "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ", "amount": "1"},
            {"address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "amount": "1"},
        ]))));
        assert_eq!(spellings.len(), 2, "0x optional, any case: one group each");
        assert_eq!(spellings[0].amount, Amount::parse("3"));
        assert_eq!(
            m[0].group["destination"],
            "0xdead00000000000000000000000000000000beef"
        );
        assert_eq!(m[0].amount, Amount::parse("3.5"));
        assert_eq!(
            m[1].group["destination"],
            "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf"
        );
        assert_eq!(m[1].amount, Amount::parse("3"));
        assert!(m.iter().all(|g| g.error.is_none()));
        assert_ne!(m[0].key, m[1].key);
    }

    #[test]
    fn unreadable_amounts_and_disagreeing_wallets_never_pass_quietly() {
        let l = limits(json!([{
            "id": "w", "window": "1d", "group_by": ["wallet", "token"], "max_amount": "100"
        }]))
        .unwrap();
        let bad = l.matches(&input(usdt_tx(
            json!([{"address": "0x1", "amount": "1e3"}]),
        )));
        assert_eq!(bad[0].amount, None);
        let mut tx = usdt_tx(json!([{"address": "0x1", "amount": "1"}]));
        tx["source"]["wallet_id"] = json!("w2");
        let m = l.matches(&input(tx));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].error
                .as_deref()
                .unwrap()
                .contains("2 different wallet ids")
        );
        let mut tx = usdt_tx(json!([{"address": "0x1", "amount": "1"}]));
        tx["token_id"] = json!("X".repeat(MAX_VALUE_LEN + 1));
        let l2 =
            limits(json!([{"id": "t", "window": "1d", "group_by": ["token"], "max_count": 3}]))
                .unwrap();
        assert!(
            l2.matches(&input(tx))[0]
                .error
                .as_deref()
                .unwrap()
                .contains("longer than")
        );
    }

    #[test]
    fn keys_are_injective_and_match_filters_apply() {
        let l = limits(json!([{
            "id": "o", "window": "1h", "group_by": ["initiator", "org"], "max_count": 5,
            "match": {"chain_ids": ["ETH"], "wallet_ids": ["w1"], "destination_types": ["Address"]}
        }]))
        .unwrap();
        let mut a = usdt_tx(json!([{"address": "0x1", "amount": "1"}]));
        a["initiator"] = json!("x\",\"y");
        let ka = l.matches(&input(a.clone()))[0].key.clone();
        let mut b = a.clone();
        b["initiator"] = json!("x");
        let mut ib = input(b);
        ib["extra"]["org"]["org_id"] = json!("y\",\"o1");
        let kb = l.matches(&ib)[0].key.clone();
        assert_ne!(ka, kb, "no value can impersonate another combination");
        let mut other_chain = a.clone();
        other_chain["chain_id"] = json!("TRON");
        assert!(l.matches(&input(other_chain)).is_empty());
        // Leaving a filtered field out never escapes the limit.
        let mut no_chain = a.clone();
        no_chain.as_object_mut().unwrap().remove("chain_id");
        assert_eq!(l.matches(&input(no_chain)).len(), 1);
        let mut numeric_chain = a.clone();
        numeric_chain["chain_id"] = json!(1);
        assert_eq!(l.matches(&input(numeric_chain)).len(), 1);
        let mut keygen = input(a);
        keygen["request_type"] = json!("KEYGEN");
        assert!(
            l.matches(&keygen).is_empty(),
            "request_types defaults to KEYSIGN"
        );
    }

    #[test]
    fn requests_paying_only_excluded_addresses_do_not_count() {
        let l = limits(json!([{
            "id": "w", "window": "1d", "group_by": ["wallet", "token"], "max_amount": "100",
            "match": {"exclude_destinations": ["0xCOLD"]}
        }]))
        .unwrap();
        let cold = usdt_tx(json!([{"address": "0xcold", "amount": "1000"}]));
        assert!(l.matches(&input(cold)).is_empty());
        let mixed = usdt_tx(json!([
            {"address": "0xcold", "amount": "1000"},
            {"address": "0xhot", "amount": "1"},
        ]));
        assert_eq!(l.matches(&input(mixed))[0].amount, Amount::parse("1001"));
    }
}

#[cfg(test)]
mod within_props {
    use super::*;
    use crate::velocity::{Usage, exceeded, facts, within};
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// The hold decision (`within`) and the facts the policy reads
        /// agree on every request, including exactly at a maximum.
        #[test]
        fn within_is_exactly_no_fact_exceeded(
            max_amount in 0u64..40,
            max_count in 0u64..6,
            amount in prop::option::of(0u64..20),
            used in prop::collection::vec((0u64..40, 0u64..8), 3),
        ) {
            let l = Limits::from_data(Some(&json!({"limits": [
                {"id": "a", "window": "1h", "group_by": ["wallet", "token"], "max_amount": max_amount.to_string()},
                {"id": "c", "window": "1h", "group_by": ["wallet"], "max_count": max_count},
                {"id": "b", "window": "1h", "group_by": ["destination", "token"],
                 "max_amount": max_amount.to_string(), "max_count": max_count},
            ]}))).unwrap();
            let amount = amount.map_or(json!("1e3"), |a| json!(a.to_string()));
            let input = json!({
                "request_type": "KEYSIGN",
                "extra": {"wallet": {"wallet_id": "w1"}, "transaction": {
                    "wallet_id": "w1", "chain_id": "ETH", "token_id": "ETH_USDT",
                    "source": {"wallet_id": "w1", "address": "0xAbC0000000000000000000000000000000000001"},
                    "destination": {"destination_type": "Address", "utxo_outputs": [
                        {"address": "0x00000000000000000000000000000000000000d1", "amount": amount},
                    ]},
                }},
            });
            let m = l.matches(&input);
            prop_assert_eq!(m.len(), 3);
            let usages: Vec<Usage> = used
                .iter()
                .map(|&(a, c)| Usage { amount: Amount::parse(&a.to_string()).unwrap(), count: c })
                .collect();
            let f = facts(&l, &m, &usages, 0);
            let none_exceeded = f
                .as_object()
                .unwrap()
                .values()
                .flat_map(|v| v.as_array().unwrap())
                .all(|x| !exceeded(x));
            prop_assert_eq!(within(&l, &m, &usages), none_exceeded);
        }
    }
}
