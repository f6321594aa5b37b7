#!/usr/bin/env python3
"""Bitcoin transaction-integrity vectors and fixtures, from independent libraries.

Writes
- tests/vectors/bitcoin.json: unsigned transactions (P2PKH, P2SH-P2WPKH,
  P2WPKH, P2TR key path, mixed inputs, testnet), their `selected_utxos`, the
  signing hash of every input and tampered cases with the error or
  disagreement tss-gate must report. Read by the tests in
  src/derive/bitcoin.rs.
- tests/fixtures/integrity_btc_*.json: full KEYSIGN requests for the
  pipeline (APPROVE and REJECT), shaped like keysign_utxo_btc_approve.json.
  Only integrity_btc_*.json files are replaced.

Nothing here comes from tss-gate. Keys are derived with bip_utils and with
embit (non-hardened public derivation from the BIP32 test-vector-1 master
xpub) and must agree; addresses are encoded by both; transactions are
serialized by embit and parsed back by bitcoinutils; every signing hash is
computed by embit AND by bitcoinutils (python-bitcoin-utils) and must agree:
legacy SIGHASH_ALL for P2PKH, BIP143 SIGHASH_ALL for P2WPKH and P2SH-P2WPKH,
BIP341 key path SIGHASH_DEFAULT (all prevouts) for P2TR (BIP86 tweak).

Re-run (from the repository root; the venv lives outside the repository):

    python3 -m venv /work/venv-btc
    /work/venv-btc/bin/pip install embit bip_utils bitcoin-utils
    /work/venv-btc/bin/python tests/vectors/gen_btc_vectors.py

Conventions the vectors assume (see the module doc of src/derive/bitcoin.rs):
`selected_utxos[].value` is a string of whole BTC, `tx_hash` is the txid in
display (byte-reversed) order, `vout_n` an integer, scripts hex with `0x`.
"""

import copy
import glob
import hashlib
import json
import os

from bip_utils import (
    Bip32Secp256k1,
    P2PKHAddrEncoder,
    P2SHAddrEncoder,
    P2TRAddrEncoder,
    P2WPKHAddrEncoder,
)
from bitcoinutils.setup import setup as bu_setup
from bitcoinutils.script import Script as BuScript
from bitcoinutils.transactions import Transaction as BuTransaction
from embit import script as es
from embit.bip32 import HDKey
from embit.networks import NETWORKS
from embit.transaction import Transaction, TransactionInput, TransactionOutput

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
XPUB = (
    "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"
)
# Allow-listed destinations in rego/data.yaml (BTC).
DEST_P2WPKH = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
DEST_P2SH = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
# Not the wallet's and not allow-listed: hash160 / key of a fixed label.
MALLORY_H = hashlib.new("ripemd160", hashlib.sha256(b"mallory").digest()).digest()
NET = {"bitcoin": NETWORKS["main"], "testnet": NETWORKS["test"]}
HRP = {"bitcoin": "bc", "testnet": "tb"}
SAT = 100_000_000

EMBIT_ROOT = HDKey.from_string(XPUB)
BIPU_ROOT = Bip32Secp256k1.FromExtendedKey(XPUB)


def pubkey(path):
    """Compressed public key at a non-hardened path; both libraries must agree."""
    a = EMBIT_ROOT.derive(path).key
    b = BIPU_ROOT.DerivePath(path).PublicKey()
    assert a.sec() == b.RawCompressed().ToBytes(), path
    return a


def hash160(b):
    return hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest()


def own_script(kind, path):
    """(scriptPubKey, redeem script or None) of the wallet's key at `path`."""
    k = pubkey(path)
    if kind == "p2pkh":
        return es.p2pkh(k), None
    if kind == "p2wpkh":
        return es.p2wpkh(k), None
    if kind == "p2sh_p2wpkh":
        redeem = es.p2wpkh(k)
        return es.p2sh(redeem), redeem
    if kind == "p2tr":
        return es.p2tr(k), None  # BIP86: tweak with no script tree
    raise ValueError(kind)


def address(script, network):
    return script.address(NET[network])


def own_address(kind, path, network):
    """Address of the wallet's key, encoded by embit and by bip_utils."""
    spk, _ = own_script(kind, path)
    a = address(spk, network)
    raw = pubkey(path).sec()
    net = NET[network]
    if kind == "p2pkh":
        b = P2PKHAddrEncoder.EncodeKey(raw, net_ver=net["p2pkh"])
    elif kind == "p2wpkh":
        b = P2WPKHAddrEncoder.EncodeKey(raw, hrp=HRP[network])
    elif kind == "p2sh_p2wpkh":
        b = P2SHAddrEncoder.EncodeKey(raw, net_ver=net["p2sh"])
    else:
        b = P2TRAddrEncoder.EncodeKey(raw, hrp=HRP[network])
    assert a == b, (kind, path, a, b)
    return a


def btc(sat):
    """Satoshis as a whole-BTC decimal string, as Cobo writes amounts."""
    whole, frac = divmod(sat, SAT)
    s = f"{whole}.{frac:08d}".rstrip("0").rstrip(".")
    return s


def prev_txid(label):
    """A made-up funding txid, display order (hex)."""
    return hashlib.sha256(label.encode()).hexdigest()


class Utxo:
    def __init__(self, kind, path, value, label, vout=0, network="bitcoin"):
        self.kind, self.path, self.value, self.vout, self.network = kind, path, value, vout, network
        self.txid = prev_txid(label)
        self.script, self.redeem = own_script(kind, path)
        self.address = own_address(kind, path, network)

    def selected(self):
        return {
            "tx_hash": self.txid,
            "vout_n": self.vout,
            "address": self.address,
            "value": btc(self.value),
            "redeem_script": "0x" + self.redeem.data.hex() if self.redeem else "",
            "revealed_script": "",
        }


def out_script(addr):
    return es.Script.from_address(addr)


def build(utxos, outputs, locktime=0, version=2, sequence=0xFFFFFFFD):
    """Unsigned transaction (embit). outputs: [(scriptPubKey bytes, sat)]."""
    vin = [TransactionInput(bytes.fromhex(u.txid), u.vout, sequence=sequence) for u in utxos]
    vout = [TransactionOutput(v, es.Script(s)) for s, v in outputs]
    return Transaction(version=version, vin=vin, vout=vout, locktime=locktime)


def sighashes(tx, utxos):
    """Signing hash of every input, by embit and by bitcoinutils (must agree)."""
    raw = tx.serialize()
    bu = BuTransaction.from_raw(raw.hex())
    assert bu.to_bytes(False) == raw, "bitcoinutils re-serializes the same bytes"
    spks = [u.script for u in utxos]
    values = [u.value for u in utxos]
    out = []
    for i, u in enumerate(utxos):
        if u.kind == "p2pkh":
            a = tx.sighash_legacy(i, u.script, 1)
            b = bu.get_transaction_digest(i, BuScript.from_raw(u.script.data.hex()), 1)
        elif u.kind in ("p2wpkh", "p2sh_p2wpkh"):
            code = es.p2pkh_from_p2wpkh(u.redeem or u.script)
            a = tx.sighash_segwit(i, code, u.value, 1)
            b = bu.get_transaction_segwit_digest(i, BuScript.from_raw(code.data.hex()), u.value, 1)
        else:
            a = tx.sighash_taproot(i, spks, values, 0)
            b = bu.get_transaction_taproot_digest(
                i, [BuScript.from_raw(s.data.hex()) for s in spks], values, 0, sighash=0
            )
        assert a == b, (i, u.kind, a.hex(), b.hex())
        out.append(a)
    return out


def description(outputs, account=False):
    """`destination` naming outputs [(address, sat)]."""
    if account:
        (a, v), = outputs
        return {"destination_type": "Address", "account_output": {"address": a, "amount": btc(v)}}
    return {
        "destination_type": "Address",
        "utxo_outputs": [{"address": a, "amount": btc(v)} for a, v in outputs],
    }


def transaction(chain, raw_hex, selected, destination):
    return {
        "chain_id": chain,
        "token_id": chain,
        "destination": destination,
        "raw_tx_info": {"unsigned_raw_tx": raw_hex, "selected_utxos": selected},
    }


CASES = []


def case(name, network, raw, utxos, destination, own, expect, selected=None, chain=None, tx_patch=None):
    chain = chain or ("BTC" if network == "bitcoin" else "TBTC")
    t = transaction(chain, "0x" + raw.hex(), selected if selected is not None else [u.selected() for u in utxos],
                    destination)
    if tx_patch:
        tx_patch(t)
    CASES.append({
        "name": name,
        "network": network,
        "transaction": t,
        "own": own,
        "bip32_path_list": [u.path for u in utxos],
        "expect": expect,
    })


def good(tx, utxos, fee, committed=True):
    return {
        "signing_hashes": ["0x" + h.hex() for h in sighashes(tx, utxos)],
        "fee": str(fee),
        "input_values_committed": committed,
        "agrees": True,
    }


def vectors():
    mallory = es.Script(b"\x00\x14" + MALLORY_H)
    mallory_addr = address(mallory, "bitcoin")
    dest = out_script(DEST_P2WPKH).data
    dest_sh = out_script(DEST_P2SH).data

    # One input of each type, each paying an allow-listed address with change
    # back to the input's own address.
    singles = {
        "p2wpkh": Utxo("p2wpkh", "m/84/0/0/0/3", 100_000_000, "fund-p2wpkh", vout=1),
        "p2pkh": Utxo("p2pkh", "m/44/0/0/0/1", 50_000_000, "fund-p2pkh", vout=0),
        "p2sh_p2wpkh": Utxo("p2sh_p2wpkh", "m/49/0/0/0/2", 80_000_000, "fund-p2sh", vout=2),
        "p2tr": Utxo("p2tr", "m/86/0/0/0/4", 70_000_000, "fund-p2tr", vout=3),
    }
    for kind, u in singles.items():
        pay, fee = 30_000_000, 10_000
        change = u.value - pay - fee
        tx = build([u], [(dest, pay), (u.script.data, change)])
        case(f"{kind}_ok", "bitcoin", tx.serialize(), [u], description([(DEST_P2WPKH, pay)]), [u.address],
             good(tx, [u], fee, committed=kind != "p2pkh"))

    # Mixed inputs: all four types; taproot commits to every amount.
    mixed = [singles["p2pkh"], singles["p2wpkh"], singles["p2sh_p2wpkh"], singles["p2tr"]]
    total = sum(u.value for u in mixed)
    outs = [(dest, 120_000_000), (dest_sh, 100_000_000)]
    fee = 25_000
    change = total - sum(v for _, v in outs) - fee
    tx_mixed = build(mixed, outs + [(singles["p2wpkh"].script.data, change)], locktime=850_000)
    own_mixed = [u.address for u in mixed]
    desc_mixed = description([(DEST_P2WPKH, 120_000_000), (DEST_P2SH, 100_000_000)])
    case("mixed_ok", "bitcoin", tx_mixed.serialize(), mixed, desc_mixed, own_mixed, good(tx_mixed, mixed, fee))

    # Mixed without taproot: the P2PKH amount is committed by no hash.
    mixed2 = [singles["p2wpkh"], singles["p2pkh"]]
    tx_m2 = build(mixed2, [(dest, 140_000_000), (singles["p2pkh"].script.data, 9_990_000)])
    case("mixed_p2pkh_p2wpkh_ok", "bitcoin", tx_m2.serialize(), mixed2,
         description([(DEST_P2WPKH, 140_000_000)]), [u.address for u in mixed2],
         good(tx_m2, mixed2, 10_000, committed=False))

    # Testnet (chain TBTC).
    tu = Utxo("p2wpkh", "m/84/1/0/0/0", 2_000_000, "fund-testnet", vout=0, network="testnet")
    tdest = address(es.Script(b"\x00\x14" + hash160(b"testnet-dest")), "testnet")
    tx_t = build([tu], [(out_script(tdest).data, 1_500_000), (tu.script.data, 499_000)])
    case("testnet_p2wpkh_ok", "testnet", tx_t.serialize(), [tu], description([(tdest, 1_500_000)]), [tu.address],
         good(tx_t, [tu], 1_000))

    # account_output instead of utxo_outputs; upper-case bech32 in the description.
    u = singles["p2wpkh"]
    tx_a = build([u], [(dest, 99_990_000)])
    case("account_output_upper_bech32_ok", "bitcoin", tx_a.serialize(), [u],
         description([(DEST_P2WPKH.upper(), 99_990_000)], account=True), [], good(tx_a, [u], 10_000))

    # Two described outputs to the same address with the same amount need two raw outputs.
    tx_dup = build([u], [(dest, 10_000_000), (dest, 10_000_000), (u.script.data, 79_990_000)])
    case("same_output_twice_ok", "bitcoin", tx_dup.serialize(), [u],
         description([(DEST_P2WPKH, 10_000_000), (DEST_P2WPKH, 10_000_000)]), [u.address],
         good(tx_dup, [u], 10_000))
    case("same_output_described_twice_paid_once", "bitcoin",
         build([u], [(dest, 10_000_000), (u.script.data, 89_990_000)]).serialize(), [u],
         description([(DEST_P2WPKH, 10_000_000), (DEST_P2WPKH, 10_000_000)]), [u.address],
         {"disagreements": ["described output #1", "10000000 sat"]})

    base_u = singles["p2wpkh"]
    base_tx = build([base_u], [(dest, 30_000_000), (base_u.script.data, 69_990_000)])
    base_raw = base_tx.serialize()
    base_desc = description([(DEST_P2WPKH, 30_000_000)])
    base_own = [base_u.address]
    true_hashes = ["0x" + h.hex() for h in sighashes(base_tx, [base_u])]

    # --- tampered selected_utxos ---
    lowered = [base_u.selected()]
    lowered[0]["value"] = btc(base_u.value - 5_000)
    case("p2wpkh_value_lowered", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"signing_hashes_not": true_hashes, "fee": "5000"}, selected=lowered)
    raised = [base_u.selected()]
    raised[0]["value"] = btc(base_u.value + 1)
    case("p2wpkh_value_raised", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"signing_hashes_not": true_hashes, "fee": "10001"}, selected=raised)
    # P2PKH: the legacy hash does not commit to the amount, so a lowered
    # amount hides fee without changing the hash; only input_values_committed
    # (false) tells.
    pk = singles["p2pkh"]
    pk_tx = build([pk], [(dest, 30_000_000), (pk.script.data, 19_990_000)])
    pk_sel = [pk.selected()]
    pk_sel[0]["value"] = btc(pk.value - 5_000)
    case("p2pkh_value_lowered_fee_hidden", "bitcoin", pk_tx.serialize(), [pk], base_desc, [pk.address],
         {"signing_hashes": ["0x" + h.hex() for h in sighashes(pk_tx, [pk])], "fee": "5000",
          "input_values_committed": False, "agrees": True}, selected=pk_sel)
    # Taproot commits to every amount: lowering the P2PKH amount in a mixed tx changes the P2TR hash.
    mixed_sel = [x.selected() for x in mixed]
    mixed_sel[0]["value"] = btc(mixed[0].value - 5_000)
    mixed_hashes = ["0x" + h.hex() for h in sighashes(tx_mixed, mixed)]
    case("mixed_p2pkh_value_lowered_taproot_hash_differs", "bitcoin", tx_mixed.serialize(), mixed, desc_mixed,
         own_mixed, {"signing_hashes_not_at": {"3": mixed_hashes[3]},
                     "signing_hashes_at": {"0": mixed_hashes[0], "1": mixed_hashes[1], "2": mixed_hashes[2]}},
         selected=mixed_sel)

    wrong_vout = [base_u.selected()]
    wrong_vout[0]["vout_n"] = base_u.vout + 1
    case("wrong_vout", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "selected_utxos does not describe it"}, selected=wrong_vout)
    wrong_txid = [base_u.selected()]
    wrong_txid[0]["tx_hash"] = bytes(reversed(bytes.fromhex(base_u.txid))).hex()
    case("txid_in_internal_byte_order", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "selected_utxos does not describe it"}, selected=wrong_txid)
    case("missing_utxo", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "selected_utxos does not describe it"}, selected=[])
    case("utxo_listed_twice", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "more than once"}, selected=[base_u.selected(), base_u.selected()])
    case("utxo_not_spent", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "which no input spends"}, selected=[base_u.selected(), singles["p2tr"].selected()])
    num = [base_u.selected()]
    num[0]["value"] = 1.0
    case("value_is_a_number", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "value is missing or not a string"}, selected=num)
    frac = [base_u.selected()]
    frac[0]["value"] = "1.000000005"
    case("value_fractional_satoshi", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "more than 8 decimal places"}, selected=frac)
    neg = [base_u.selected()]
    neg[0]["value"] = "-1"
    case("value_negative", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "not a plain decimal"}, selected=neg)
    sats = [base_u.selected()]
    sats[0]["value"] = str(base_u.value)  # satoshis where whole BTC is expected
    case("value_in_satoshis", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "more than 21 000 000 BTC"}, selected=sats)
    testnet_addr = [base_u.selected()]
    testnet_addr[0]["address"] = own_address("p2wpkh", "m/84/0/0/0/3", "testnet")
    case("input_address_wrong_network", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "is not an address of"}, selected=testnet_addr)

    # P2WSH input (1-of-1 multisig witness script): not signed for.
    ws = es.multisig(1, [pubkey("m/48/0/0/0/0")])
    wsh = es.p2wsh(ws)
    wsh_sel = [{"tx_hash": prev_txid("fund-p2wsh"), "vout_n": 0, "address": address(wsh, "bitcoin"),
                "value": "1", "redeem_script": "0x" + ws.data.hex(), "revealed_script": ""}]
    wsh_tx = Transaction(version=2, vin=[TransactionInput(bytes.fromhex(prev_txid("fund-p2wsh")), 0)],
                         vout=[TransactionOutput(99_990_000, es.Script(dest))])
    CASES.append({"name": "p2wsh_input", "network": "bitcoin",
                  "transaction": transaction("BTC", "0x" + wsh_tx.serialize().hex(), wsh_sel,
                                             description([(DEST_P2WPKH, 99_990_000)])),
                  "own": [], "bip32_path_list": ["m/48/0/0/0/0"], "expect": {"error": "p2wsh"}})
    # P2SH wrapping a multisig, and a P2SH-P2WPKH with another key's redeem script.
    sh_ms = es.p2sh(ws)
    shms_sel = [{"tx_hash": prev_txid("fund-p2wsh"), "vout_n": 0, "address": address(sh_ms, "bitcoin"),
                 "value": "1", "redeem_script": "0x" + ws.data.hex()}]
    CASES.append({"name": "p2sh_multisig_input", "network": "bitcoin",
                  "transaction": transaction("BTC", "0x" + wsh_tx.serialize().hex(), shms_sel,
                                             description([(DEST_P2WPKH, 99_990_000)])),
                  "own": [], "bip32_path_list": ["m/48/0/0/0/0"], "expect": {"error": "not a p2wpkh program"}})
    ps = singles["p2sh_p2wpkh"]
    ps_tx = build([ps], [(dest, 79_990_000)])
    other_redeem = [ps.selected()]
    other_redeem[0]["redeem_script"] = "0x" + es.p2wpkh(pubkey("m/49/0/0/0/3")).data.hex()
    case("p2sh_redeem_script_of_another_key", "bitcoin", ps_tx.serialize(), [ps],
         description([(DEST_P2WPKH, 79_990_000)]), [], {"error": "does not hash to"}, selected=other_redeem)
    no_redeem = [ps.selected()]
    no_redeem[0]["redeem_script"] = None
    case("p2sh_without_redeem_script", "bitcoin", ps_tx.serialize(), [ps],
         description([(DEST_P2WPKH, 79_990_000)]), [], {"error": "has no redeem_script"}, selected=no_redeem)
    tr = singles["p2tr"]
    tr_tx = build([tr], [(dest, 69_990_000)])
    script_path = [tr.selected()]
    script_path[0]["revealed_script"] = "0x20" + pubkey("m/86/0/0/0/5").xonly().hex() + "ac"
    case("p2tr_script_path", "bitcoin", tr_tx.serialize(), [tr], description([(DEST_P2WPKH, 69_990_000)]), [],
         {"error": "script-path spend"}, selected=script_path)
    wp_redeem = [base_u.selected()]
    wp_redeem[0]["redeem_script"] = "0x" + base_u.script.data.hex()
    case("p2wpkh_with_redeem_script", "bitcoin", base_raw, [base_u], base_desc, base_own,
         {"error": "a redeem_script is given"}, selected=wp_redeem)

    # --- tampered raw transaction ---
    case("trailing_byte", "bitcoin", base_raw + b"\x00", [base_u], base_desc, base_own, {"error": "trailing"})
    case("truncated", "bitcoin", base_raw[:-1], [base_u], base_desc, base_own,
         {"error": "not a Bitcoin transaction"})
    signed = copy.deepcopy(base_tx)
    signed.vin[0].script_sig = es.Script(b"\x01\x01")
    case("signed_input_script_sig", "bitcoin", signed.serialize(), [base_u], base_desc, base_own,
         {"error": "signed or partially signed"})
    witnessed = copy.deepcopy(base_tx)
    witnessed.vin[0].witness = es.Witness([b"\x30" * 71, pubkey(base_u.path).sec()])
    case("signed_input_witness", "bitcoin", witnessed.serialize(), [base_u], base_desc, base_own,
         {"error": "signed or partially signed"})
    dup_in = Transaction(version=2, vin=[TransactionInput(bytes.fromhex(base_u.txid), base_u.vout)] * 2,
                         vout=[TransactionOutput(1000, es.Script(dest))])
    case("duplicate_input", "bitcoin", dup_in.serialize(), [base_u, base_u], base_desc, base_own,
         {"error": "a second time"})
    no_out = Transaction(version=2, vin=[TransactionInput(bytes.fromhex(base_u.txid), base_u.vout)], vout=[])
    case("no_outputs", "bitcoin", no_out.serialize(), [base_u], base_desc, base_own, {"error": "no outputs"})
    over = build([base_u], [(dest, base_u.value + 1)])
    case("outputs_exceed_inputs", "bitcoin", over.serialize(), [base_u],
         description([(DEST_P2WPKH, base_u.value + 1)]), base_own, {"error": "exceed the inputs"})

    # --- description disagreements (hashes still exact) ---
    def disagree(name, tx, desc, subs, utxos=(base_u,), own=None):
        ex = {"signing_hashes": ["0x" + h.hex() for h in sighashes(tx, list(utxos))], "disagreements": subs}
        case(name, "bitcoin", tx.serialize(), list(utxos), desc, own if own is not None else [u.address for u in utxos],
             ex)

    foreign_change = es.p2wpkh(pubkey("m/84/0/0/0/9"))  # derived, but not an own address of this request
    disagree("change_to_foreign_address",
             build([base_u], [(dest, 30_000_000), (foreign_change.data, 69_990_000)]), base_desc,
             ["output #1", "69990000 sat", address(foreign_change, "bitcoin"), "not the wallet's own address"])
    disagree("change_to_mallory", build([base_u], [(dest, 30_000_000), (mallory.data, 69_990_000)]), base_desc,
             ["output #1", mallory_addr, "not the wallet's own address"])
    disagree("amount_raised", build([base_u], [(dest, 30_000_001), (base_u.script.data, 69_989_999)]), base_desc,
             ["described output #0", "30000000 sat", "30000001 sat", "output #0: raw tx pays 30000001 sat"])
    disagree("recipient_swapped", build([base_u], [(mallory.data, 30_000_000), (base_u.script.data, 69_990_000)]),
             base_desc, ["no output of the raw tx pays that address", mallory_addr])
    disagree("extra_undescribed_output",
             build([base_u], [(dest, 30_000_000), (mallory.data, 1_000_000), (base_u.script.data, 68_990_000)]),
             base_desc, ["output #1: raw tx pays 1000000 sat to " + mallory_addr, "does not name"])
    op_return = b"\x6a\x04" + b"cobo"
    disagree("op_return_output",
             build([base_u], [(dest, 30_000_000), (op_return, 0), (base_u.script.data, 69_990_000)]), base_desc,
             ["output #1", "OP_RETURN", op_return.hex()])
    disagree("described_address_wrong_network", base_tx,
             description([(own_address("p2wpkh", "m/84/1/0/0/0", "testnet"), 30_000_000)]),
             ["described output #0", "is not an address of"])
    disagree("described_amount_fractional_satoshi", base_tx,
             {"destination_type": "Address", "utxo_outputs": [{"address": DEST_P2WPKH, "amount": "0.300000001"}]},
             ["more than 8 decimal places"])
    disagree("described_amount_number", base_tx,
             {"destination_type": "Address", "utxo_outputs": [{"address": DEST_P2WPKH, "amount": 0.3}]},
             ["must both be strings"])
    disagree("both_account_and_utxo_outputs", base_tx,
             {"destination_type": "Address", "utxo_outputs": [{"address": DEST_P2WPKH, "amount": "0.3"}],
              "account_output": {"address": DEST_P2WPKH, "amount": "0.3"}}, ["both"])
    disagree("no_described_outputs", base_tx, {"destination_type": "Address", "utxo_outputs": []},
             ["names no outputs"])
    disagree("contract_destination", base_tx, {"destination_type": "EVM_Contract", "address": DEST_P2WPKH},
             ["EVM_Contract"])
    # The description names only the change; the payment is undescribed.
    disagree("only_change_described", base_tx, description([(base_u.address, 69_990_000)]),
             ["output #0: raw tx pays 30000000 sat to " + DEST_P2WPKH])
    # Token id other than the chain's native coin.
    CASES.append({
        "name": "token_id_not_native", "network": "bitcoin",
        "transaction": {**transaction("BTC", "0x" + base_raw.hex(), [base_u.selected()], base_desc),
                        "token_id": "BTC_ORDI"},
        "own": base_own, "bip32_path_list": [base_u.path],
        "expect": {"signing_hashes": true_hashes, "disagreements": ["asset", "BTC_ORDI"]},
    })

    return {
        "xpub": XPUB,
        "addresses": {
            p: own_address(k, p, n)
            for k, p, n in [
                ("p2wpkh", "m/84/0/0/0/3", "bitcoin"),
                ("p2pkh", "m/44/0/0/0/1", "bitcoin"),
                ("p2sh_p2wpkh", "m/49/0/0/0/2", "bitcoin"),
                ("p2tr", "m/86/0/0/0/4", "bitcoin"),
                ("p2wpkh", "m/84/1/0/0/0", "testnet"),
            ]
        },
        "cases": CASES,
    }


# ---------------------------------------------------------------- fixtures


def load(path):
    with open(path) as fh:
        return json.load(fh)


def save(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def fixtures():
    base = load(os.path.join(FIXTURES, "keysign_utxo_btc_approve.json"))
    for old in glob.glob(os.path.join(FIXTURES, "integrity_btc_*.json")):
        os.remove(old)
    n = 0

    def emit(name, desc, action, reasons, utxos, tx, dest_outputs, msg_hashes=None, paths=None, selected=None,
             raw_tx="keep", change=None, file=None, source=None, patch=None):
        """change: the described change_address (default: the first input's
        address; NO_CHANGE_ADDRESS leaves the key out). source: source.address
        (default: the first input's). patch(detail, extra): last edits."""
        nonlocal n
        n += 1
        fx = copy.deepcopy(base)
        r = fx["request"]
        detail, extra = json.loads(r["request_detail"]), json.loads(r["extra_info"])
        t = extra["transaction"]
        hashes = [h.hex() for h in sighashes(tx, utxos)] if tx is not None else []
        detail["msg_hash_list"] = msg_hashes if msg_hashes is not None else hashes
        detail["bip32_path_list"] = paths if paths is not None else [u.path for u in utxos]
        detail["task_id"] = hashlib.sha256(name.encode()).hexdigest()[:32]
        extra["source_addresses"] = [
            {"address": u.address, "chain_id": "BTC", "path": u.path,
             "encoding": {"p2pkh": "ENCODING_P2PKH", "p2wpkh": "ENCODING_P2WPKH",
                          "p2sh_p2wpkh": "ENCODING_P2SH_P2WPKH", "p2tr": "ENCODING_P2TR"}[u.kind],
             "root_pubkey": XPUB}
            for u in utxos
        ]
        t["source"]["address"] = source or utxos[0].address
        t["destination"] = {
            "destination_type": "Address",
            "utxo_outputs": [{"address": a, "amount": btc(v)} for a, v in dest_outputs],
            "change_address": change or utxos[0].address,
            "force_internal": False,
            "force_external": False,
        }
        if change is NO_CHANGE_ADDRESS:
            del t["destination"]["change_address"]
        t["description"] = desc
        info = {
            "unsigned_raw_tx": "0x" + tx.serialize().hex() if tx is not None else None,
            "selected_utxos": selected if selected is not None else [u.selected() for u in utxos],
        }
        if raw_tx == "absent":
            info = None
        elif raw_tx == "empty":
            info["unsigned_raw_tx"] = ""
        elif raw_tx == "null":
            info["unsigned_raw_tx"] = None
        if info is not None:
            t["raw_tx_info"] = info
        else:
            t.pop("raw_tx_info", None)
        fx["description"] = desc
        if patch:
            patch(detail, extra)
        r["request_id"] = f"integrity-btc-{n:02d}-{name}"
        r["request_detail"] = json.dumps(detail, separators=(",", ":"))
        r["extra_info"] = json.dumps(extra, separators=(",", ":"))
        fx["expect"] = {"action": action, "status": 0, "reasons": reasons}
        save(os.path.join(FIXTURES, file or f"integrity_btc_{name}.json"), fx)

    dest = out_script(DEST_P2WPKH).data
    dest_sh = out_script(DEST_P2SH).data
    w = Utxo("p2wpkh", "m/84/0/0/0/3", 150_000_000, "fixture-fund-1", vout=1)
    s = Utxo("p2sh_p2wpkh", "m/49/0/0/0/2", 90_000_000, "fixture-fund-2", vout=0)
    pk = Utxo("p2pkh", "m/44/0/0/0/1", 60_000_000, "fixture-fund-3", vout=4)
    mallory = es.Script(b"\x00\x14" + MALLORY_H).data
    foreign = es.p2wpkh(pubkey("m/84/0/0/0/9")).data

    # APPROVE: one P2WPKH input, 1.2 BTC to an allow-listed address, change back, fee 0.0002.
    one_out = [(DEST_P2WPKH, 120_000_000)]
    tx1 = build([w], [(dest, 120_000_000), (w.script.data, 29_980_000)])
    emit("p2wpkh_with_change_approve",
         "BTC: one P2WPKH input (m/84/0/0/0/3) pays 1.2 BTC to an allow-listed address, change to the input's "
         "address, fee 0.0002 BTC; bytes, hashes and description agree", "APPROVE", [], [w], tx1, one_out)
    # APPROVE: P2WPKH + P2SH-P2WPKH inputs, two allow-listed outputs, change to the second input's address.
    two_out = [(DEST_P2SH, 150_000_000), (DEST_P2WPKH, 50_000_000)]
    tx2 = build([w, s], [(dest_sh, 150_000_000), (dest, 50_000_000), (s.script.data, 39_950_000)])
    emit("two_input_types_approve",
         "BTC: P2WPKH (m/84/0/0/0/3) and P2SH-P2WPKH (m/49/0/0/0/2) inputs pay 1.5 + 0.5 BTC to allow-listed "
         "addresses, change to the second input's address, fee 0.0005 BTC", "APPROVE", [], [w, s], tx2, two_out,
         change=s.address)

    # REJECT: an EVM transaction hash with an EVM path on chain BTC.
    evm_hash = "5d85497ed6f124086db30bcd5304c9ee366f9cecdff43fe968c3016413b84e72"  # integrity_eip1559_eth_approve
    emit("evm_hash_on_btc_reject", "BTC KEYSIGN whose msg_hash_list is an EVM transaction hash with path m/44/60/0/0/0",
         "REJECT", ["msg_hash_list"], [w], tx1, one_out, msg_hashes=[evm_hash], paths=["m/44/60/0/0/0"])
    emit("evm_hash_beside_btc_hash_reject",
         "BTC KEYSIGN that signs the real input hash and also an EVM transaction hash with an EVM path",
         "REJECT", ["msg_hash_list"], [w], tx1, one_out,
         msg_hashes=[sighashes(tx1, [w])[0].hex(), evm_hash], paths=[w.path, "m/44/60/0/0/0"])
    # REJECT: raw tx missing.
    emit("raw_tx_info_absent_reject", "BTC KEYSIGN without raw_tx_info", "REJECT", ["unsigned_raw_tx"], [w], tx1,
         one_out, raw_tx="absent")
    emit("raw_tx_empty_reject", "BTC KEYSIGN whose unsigned_raw_tx is empty", "REJECT", ["unsigned_raw_tx"], [w],
         tx1, one_out, raw_tx="empty")
    emit("raw_tx_null_reject", "BTC KEYSIGN whose unsigned_raw_tx is null", "REJECT", ["unsigned_raw_tx"], [w], tx1,
         one_out, raw_tx="null")
    # REJECT: the raw tx pays an undescribed address.
    emit("pays_undescribed_address_reject",
         "BTC: described 1.2 BTC to an allow-listed address; the signed bytes pay it to another address",
         "REJECT", ["raw transaction disagrees"], [w],
         build([w], [(mallory, 120_000_000), (w.script.data, 29_980_000)]), one_out)
    emit("extra_undescribed_output_reject",
         "BTC: the signed bytes pay the described output and also 0.1 BTC to an undescribed address",
         "REJECT", ["raw transaction disagrees"], [w],
         build([w], [(dest, 120_000_000), (mallory, 10_000_000), (w.script.data, 19_980_000)]), one_out)
    # REJECT: change to a foreign address.
    emit("change_to_foreign_address_reject",
         "BTC: the change output goes to an address that is not the wallet's own (undescribed)",
         "REJECT", ["raw transaction disagrees"], [w],
         build([w], [(dest, 120_000_000), (mallory, 29_980_000)]), one_out)
    emit("change_to_other_derived_address_reject",
         "BTC: the change goes to m/84/0/0/0/9 of the same xpub, which this request does not prove to be own",
         "REJECT", ["raw transaction disagrees"], [w],
         build([w], [(dest, 120_000_000), (foreign, 29_980_000)]), one_out)
    # REJECT: amount raised in the raw tx.
    emit("amount_raised_reject", "BTC: the signed bytes pay the described address 1 sat more than described",
         "REJECT", ["raw transaction disagrees"], [w],
         build([w], [(dest, 120_000_001), (w.script.data, 29_979_999)]), one_out)
    emit("amount_raised_over_cap_reject",
         "BTC: described 1.2 BTC, the signed bytes pay 1.45 BTC to the same address",
         "REJECT", ["raw transaction disagrees"], [w],
         build([w], [(dest, 145_000_000), (w.script.data, 4_980_000)]), one_out)
    # REJECT: fee 0.5 BTC.
    emit("fee_half_btc_reject", "BTC: outputs and description agree but the fee is 0.5 BTC", "REJECT", ["fee"],
         [w], build([w], [(dest, 90_000_000), (w.script.data, 10_000_000)]), [(DEST_P2WPKH, 90_000_000)])
    emit("fee_half_btc_no_change_reject", "BTC: a single output and no change; the fee is 0.5 BTC", "REJECT",
         ["fee"], [w, s], build([w, s], [(dest, 190_000_000)]), [(DEST_P2WPKH, 190_000_000)])
    # REJECT: msg hash of another transaction.
    other = build([w], [(mallory, 120_000_000), (w.script.data, 29_980_000)])
    emit("msg_hash_of_other_tx_reject",
         "BTC: raw tx and description agree but msg_hash_list holds the hash of a tx paying another address",
         "REJECT", ["msg_hash_list"], [w], tx1, one_out, msg_hashes=[sighashes(other, [w])[0].hex()])
    relocked = build([w], [(dest, 120_000_000), (w.script.data, 29_980_000)], locktime=1)
    emit("msg_hash_other_locktime_reject",
         "BTC: msg_hash_list holds the hash of the same payment with another lock_time", "REJECT",
         ["msg_hash_list"], [w], tx1, one_out, msg_hashes=[sighashes(relocked, [w])[0].hex()])
    h2 = [h.hex() for h in sighashes(tx2, [w, s])]
    emit("msg_hashes_swapped_reject",
         "BTC: two inputs, msg_hash_list has their hashes in swapped order (path i would sign input j)",
         "REJECT", ["msg_hash_list"], [w, s], tx2, two_out, msg_hashes=[h2[1], h2[0]], change=s.address)
    # REJECT: input value lowered in selected_utxos (the signer still signs the real hash).
    low = [w.selected()]
    low[0]["value"] = btc(w.value - 49_900_000)
    tx_low = build([w], [(dest, 100_000_000), (w.script.data, 90_000)])
    emit("p2wpkh_value_lowered_reject",
         "BTC: selected_utxos understates the P2WPKH input by 0.499 BTC to hide a 0.4991 BTC fee; the real "
         "BIP143 hash (signed) differs from the one computed from the stated value", "REJECT", ["msg_hash_list"],
         [w], tx_low, [(DEST_P2WPKH, 100_000_000)], selected=low)
    low2 = [w.selected(), s.selected()]
    low2[1]["value"] = btc(s.value - 39_950_000)
    tx_low2 = build([w, s], [(dest_sh, 150_000_000), (dest, 50_000_000)])
    emit("p2sh_p2wpkh_value_lowered_reject",
         "BTC: selected_utxos understates the P2SH-P2WPKH input by 0.3995 BTC to hide a 0.4 BTC fee; its "
         "BIP143 hash then differs from the real (signed) one",
         "REJECT", ["msg_hash_list"], [w, s], tx_low2, two_out, selected=low2)
    # The legacy hash does not commit to the amount: only input_values_committed can catch this.
    low3 = [pk.selected()]
    low3[0]["value"] = btc(pk.value - 45_000_000)
    tx_low3 = build([pk], [(dest, 14_990_000)])
    emit("p2pkh_value_lowered_reject",
         "BTC: selected_utxos understates a P2PKH input by 0.45 BTC; the legacy hash is unchanged, so the "
         "stated fee (0.0001) hides a real fee of 0.4501 BTC; input_values_committed is false",
         "REJECT", ["fee"], [pk], tx_low3, [(DEST_P2WPKH, 14_990_000)], selected=low3)

    # The business-rule fixtures of the UTXO cap (keysign_utxo_btc_*), with
    # real transactions so that only the rule they are about decides.
    w2 = Utxo("p2wpkh", "m/84/0/0/0/3", 120_000_000, "fixture-fund-4", vout=2)
    split = [(DEST_P2WPKH, 125_000_000), (DEST_P2SH, 125_000_000)]
    emit("utxo_cap_exact", "BTC withdrawal with two allow-listed UTXO outputs totalling 2.5 BTC (exactly the "
         "cap), two P2WPKH inputs of the wallet, change back to it, fee 0.0002 BTC", "APPROVE", [], [w, w2],
         build([w, w2], [(dest, 125_000_000), (dest_sh, 125_000_000), (w.script.data, 19_980_000)]), split,
         file="keysign_utxo_btc_approve.json")
    over = [(DEST_P2WPKH, 150_000_000), (DEST_P2SH, 100_000_001)]
    emit("utxo_cap_split_over", "BTC outputs of 1.5 + 1.00000001 each under the cap but totalling over the "
         "2.5 BTC cap", "REJECT", ["amount `2.50000001` of token `BTC` exceeds the per-transaction cap `2.5`"],
         [w, w2], build([w, w2], [(dest, 150_000_000), (dest_sh, 100_000_001), (w.script.data, 19_979_999)]),
         over, file="keysign_utxo_btc_split_over_cap_reject.json")
    account_fixtures(emit, dest)
    print(f"wrote {n} fixtures")


NO_CHANGE_ADDRESS = object()


def account_fixtures(emit, dest):
    """Wallets of one vault share the root key: the account (third path
    element) is what tells their addresses apart. Wallet 5b2c... is account
    0, wallet a71e... account 1 (data.integrity.wallet_keys accounts)."""
    a0 = Utxo("p2wpkh", "m/84/0/0/0/3", 50_000_000, "fixture-fund-acct0", vout=0)
    a0b = Utxo("p2wpkh", "m/84/0/0/0/4", 30_000_000, "fixture-fund-acct0-b", vout=1)
    d1 = Utxo("p2wpkh", "m/84/0/1/0/0", 10_000, "fixture-fund-dust-acct1", vout=7)  # 0.0001 BTC, account 1
    a0_int = own_address("p2wpkh", "m/84/0/0/1/0", "bitcoin")  # account 0's internal chain, not an input
    pay = [(DEST_P2WPKH, 20_000_000)]

    # REJECT: a dust input of account 1 makes its address "own": 0.2999 BTC of
    # account 0 leaves as undescribed "change" to the other wallet.
    emit("dust_input_other_account_change_reject",
         "BTC: inputs m/84/0/0/0/3 (0.5 BTC, this wallet's account 0) and a 0.0001 BTC dust input from "
         "m/84/0/1/0/0 (account 1, another wallet of the same root key); pays the described 0.2 BTC and "
         "0.2999 BTC undescribed \"change\" to the account-1 address; no change_address; fee 0.0002 BTC",
         "REJECT", ["is not in an account of wallet"], [a0, d1],
         build([a0, d1], [(dest, 20_000_000), (d1.script.data, 29_990_000)]), pay, change=NO_CHANGE_ADDRESS)
    # REJECT: same inputs, honest change, but source.address names the dust
    # input (per-source limits would be charged to account 1).
    emit("dust_input_other_account_source_reject",
         "BTC: inputs m/84/0/0/0/3 (account 0) and a dust input from m/84/0/1/0/0 (account 1); 0.2 BTC "
         "described, 0.2999 BTC change back to the account-0 address, but source.address names the "
         "account-1 dust input's address; fee 0.0002 BTC",
         "REJECT", ["is not in an account of wallet"], [a0, d1],
         build([a0, d1], [(dest, 20_000_000), (a0.script.data, 29_990_000)]), pay, source=d1.address)
    # REJECT: change split over two own addresses while change_address names one.
    emit("change_beside_described_change_reject",
         "BTC: inputs m/84/0/0/0/3 (0.5) and m/84/0/0/0/4 (0.3) of account 0 pay the described 0.3 BTC; "
         "change 0.25 BTC to the first input's address (the change_address) and 0.2498 BTC to the second's; "
         "fee 0.0002 BTC",
         "REJECT", ["not to the described change_address", "24980000 sat as change to " + a0b.address],
         [a0, a0b],
         build([a0, a0b], [(dest, 30_000_000), (a0.script.data, 25_000_000), (a0b.script.data, 24_980_000)]),
         [(DEST_P2WPKH, 30_000_000)], change=a0.address)
    # REJECT: change_address is account 0's m/84/0/0/1/0, which no signing path proves.
    emit("change_address_not_own_reject",
         "BTC: one input m/84/0/0/0/3 pays the described 0.2 BTC; change 0.2998 BTC goes to the described "
         "change_address, the address of m/84/0/0/1/0, which is no signing path's; fee 0.0002 BTC",
         "REJECT", ["change_address " + a0_int + " is not an address of the signing paths' keys",
                    "not the wallet's own address"], [a0],
         build([a0], [(dest, 20_000_000), (out_script(a0_int).data, 29_980_000)]), pay, change=a0_int)

    # REJECT: account 0 spelled hardened ("0'"): not account 0 (and not derivable from the xpub).
    def hardened(detail, extra):
        detail["bip32_path_list"] = ["m/84/0/0'/0/3"]
        extra["source_addresses"][0]["path"] = "m/84/0/0'/0/3"

    emit("input_account_hardened_spelling_reject",
         "BTC: one input of m/84/0/0/0/3 pays the described 0.2 BTC with change back, but bip32_path_list "
         "(and source_addresses) spell the path m/84/0/0'/0/3", "REJECT",
         ["is not in an account of wallet", "hardened index cannot be derived from a public key"], [a0],
         build([a0], [(dest, 20_000_000), (a0.script.data, 29_980_000)]), pay, patch=hardened)

    # APPROVE: two inputs of account 0, one payment, change to change_address (the first input's).
    emit("two_inputs_one_account_approve",
         "BTC: inputs m/84/0/0/0/3 (0.5) and m/84/0/0/0/4 (0.3), both account 0, pay the described 0.3 BTC; "
         "0.4998 BTC change to the change_address, the first input's address; fee 0.0002 BTC", "APPROVE", [],
         [a0, a0b], build([a0, a0b], [(dest, 30_000_000), (a0.script.data, 49_980_000)]),
         [(DEST_P2WPKH, 30_000_000)], change=a0.address)


def main():
    bu_setup("mainnet")
    doc = vectors()
    save(os.path.join(HERE, "bitcoin.json"), doc)
    print(f"wrote {len(doc['cases'])} vector cases")
    fixtures()


if __name__ == "__main__":
    main()
