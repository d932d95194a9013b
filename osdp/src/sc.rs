//! The OSDP secure channel: keys, the four-step handshake and the MAC chain.
//!
//! Handshake (CP on the left):
//!
//! ```text
//! osdp_CHLNG  (SCS_11, RND.A)          ->
//!                                      <- osdp_CCRYPT (SCS_12, cUID, RND.B, client cryptogram)
//! osdp_SCRYPT (SCS_13, server crypt.)  ->
//!                                      <- osdp_RMAC_I (SCS_14, initial R-MAC)
//! ```
//!
//! Session keys are derived from the secure channel base key (SCBK, or the
//! published SCBK-D in install mode) and RND.A. A [`Session`] can only be
//! obtained by verifying the peer's cryptogram ([`CpChallenge::verify`] then
//! [`CpPending::establish`] on a control panel, [`PdChallenge::verify`] on a
//! peripheral), so holding one proves the handshake succeeded. Every later
//! packet carries a 4-byte MAC chained on the previous one (commands chain on
//! the last reply MAC, replies on the last command MAC) and, when it has data,
//! the data encrypted with AES-128-CBC. A MAC or padding failure consumes the
//! session: the caller must handshake again.
//!
//! All key material is zeroized on drop and never printed.

use aes::cipher::block_padding::{Iso7816, NoPadding};
use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::Aes128;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::frame::{self, Packet, MAC_LEN};

type CbcEnc = cbc::Encryptor<Aes128>;
type CbcDec = cbc::Decryptor<Aes128>;

/// AES block and key size.
pub const BLOCK: usize = 16;

/// SCB data byte in SCS_11/SCS_13 selecting SCBK-D (install mode).
pub const KEY_SELECT_DEFAULT: u8 = 0x00;
/// SCB data byte in SCS_11/SCS_13 selecting the PD's own SCBK.
pub const KEY_SELECT_SCBK: u8 = 0x01;

/// An AES-128 key (SCBK or SCBK-D). Zeroized on drop; Debug is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; BLOCK]);

impl PartialEq for Key {
    /// Constant time: how long it takes does not depend on where keys differ.
    fn eq(&self, other: &Key) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for Key {}

impl Key {
    /// SCBK-D, the published default key used only in install mode.
    pub const DEFAULT: Key = Key([
        0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E,
        0x3F,
    ]);

    /// Wraps raw key bytes.
    pub const fn new(bytes: [u8; BLOCK]) -> Key {
        Key(bytes)
    }

    /// Parses 32 hexadecimal digits.
    pub fn from_hex(hex: &str) -> Result<Key, ScError> {
        let hex = hex.trim();
        // Hex digits only: `from_str_radix` alone would also take a sign.
        if hex.len() != 2 * BLOCK || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ScError::BadKeyFormat);
        }
        let mut out = [0u8; BLOCK];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| ScError::BadKeyFormat)?;
        }
        Ok(Key(out))
    }

    /// Parses a key from a byte slice of exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Key, ScError> {
        let arr: [u8; BLOCK] = bytes.try_into().map_err(|_| ScError::BadKeyFormat)?;
        Ok(Key(arr))
    }

    /// The key bytes, for sending in osdp_KEYSET or storing in a key file.
    pub fn expose(&self) -> &[u8; BLOCK] {
        &self.0
    }

    /// Whether this is SCBK-D.
    pub fn is_default(&self) -> bool {
        self == &Key::DEFAULT
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Why a secure channel step failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScError {
    /// A key is not 16 bytes / 32 hex digits.
    #[error("key must be 16 bytes (32 hex digits)")]
    BadKeyFormat,
    /// The peer's cryptogram does not match: wrong key on one side.
    #[error("cryptogram mismatch (wrong secure channel key)")]
    BadCryptogram,
    /// The initial R-MAC from the PD does not match.
    #[error("initial R-MAC mismatch")]
    BadInitialRmac,
    /// A packet's MAC does not verify.
    #[error("MAC mismatch")]
    BadMac,
    /// A packet that must be secured arrived without a MAC.
    #[error("packet is not secured")]
    NotSecured,
    /// Encrypted data is not a whole number of blocks or its padding is bad.
    #[error("encrypted data is malformed")]
    BadCiphertext,
    /// A handshake message has the wrong length.
    #[error("handshake message has the wrong length")]
    BadHandshakeLength,
}

/// S-ENC, S-MAC1 and S-MAC2, ready as AES instances (zeroized on drop).
#[derive(Clone)]
struct SessionKeys {
    enc: Aes128,
    mac1: Aes128,
    mac2: Aes128,
}

impl SessionKeys {
    /// Derives the session keys: each is AES-ECB(SCBK, 01 xx RND.A[0..6] 00..).
    fn derive(scbk: &Key, rnd_a: &[u8; 8]) -> SessionKeys {
        let base = Aes128::new(&scbk.0.into());
        let make = |tag: u8| {
            let mut block = [0u8; BLOCK];
            block[0] = 0x01;
            block[1] = tag;
            block[2..8].copy_from_slice(&rnd_a[..6]);
            let mut b = block.into();
            base.encrypt_block(&mut b);
            let mut raw: [u8; BLOCK] = b.into();
            let cipher = Aes128::new(&raw.into());
            raw.zeroize();
            cipher
        };
        SessionKeys {
            enc: make(0x82),
            mac1: make(0x01),
            mac2: make(0x02),
        }
    }

    fn ecb(cipher: &Aes128, first: &[u8; 8], second: &[u8; 8]) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..8].copy_from_slice(first);
        block[8..].copy_from_slice(second);
        let mut b = block.into();
        cipher.encrypt_block(&mut b);
        b.into()
    }

    /// Client cryptogram (PD): AES(S-ENC, RND.A || RND.B).
    fn client_cryptogram(&self, rnd_a: &[u8; 8], rnd_b: &[u8; 8]) -> [u8; BLOCK] {
        Self::ecb(&self.enc, rnd_a, rnd_b)
    }

    /// Server cryptogram (CP): AES(S-ENC, RND.B || RND.A).
    fn server_cryptogram(&self, rnd_a: &[u8; 8], rnd_b: &[u8; 8]) -> [u8; BLOCK] {
        Self::ecb(&self.enc, rnd_b, rnd_a)
    }

    /// Initial R-MAC: AES(S-MAC2, AES(S-MAC1, server cryptogram)).
    fn initial_rmac(&self, server_cryptogram: &[u8; BLOCK]) -> [u8; BLOCK] {
        let mut b = (*server_cryptogram).into();
        self.mac1.encrypt_block(&mut b);
        self.mac2.encrypt_block(&mut b);
        b.into()
    }

    /// OSDP MAC: CBC-MAC under S-MAC1 over all blocks but the last, the last
    /// under S-MAC2; a partial (or empty) last block is padded 0x80 00...
    fn mac(&self, iv: &[u8; BLOCK], msg: &[u8]) -> [u8; BLOCK] {
        let full = msg.len() / BLOCK;
        let rem = msg.len() % BLOCK;
        // Blocks handled with S-MAC1: all whole blocks except a final whole one.
        let head_blocks = if rem == 0 {
            full.saturating_sub(1)
        } else {
            full
        };
        let mut chain = *iv;
        if head_blocks > 0 {
            let head = &msg[..head_blocks * BLOCK];
            let enc = CbcEnc::inner_iv_init(self.mac1.clone(), &chain.into());
            let ct = enc.encrypt_padded_vec_mut::<NoPadding>(head);
            chain.copy_from_slice(&ct[ct.len() - BLOCK..]);
        }
        let tail = &msg[head_blocks * BLOCK..];
        let mut last = [0u8; BLOCK];
        last[..tail.len()].copy_from_slice(tail);
        if tail.len() < BLOCK {
            last[tail.len()] = 0x80;
        }
        for (l, c) in last.iter_mut().zip(chain.iter()) {
            *l ^= c;
        }
        let mut b = last.into();
        self.mac2.encrypt_block(&mut b);
        b.into()
    }
}

fn invert(mac: &[u8; BLOCK]) -> [u8; BLOCK] {
    let mut iv = *mac;
    for b in &mut iv {
        *b = !*b;
    }
    iv
}

/// Constant-time equality for secrets of equal length.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Control panel, step 1: challenge sent, waiting for osdp_CCRYPT.
pub struct CpChallenge {
    keys: SessionKeys,
    rnd_a: [u8; 8],
    default_key: bool,
}

impl CpChallenge {
    /// Starts a handshake with `scbk` (SCBK-D when `default_key`), using the
    /// caller's fresh random RND.A. Send osdp_CHLNG with [`Self::rnd_a`] and
    /// SCB data [`Self::key_select`].
    pub fn new(scbk: &Key, default_key: bool, rnd_a: [u8; 8]) -> CpChallenge {
        let key = if default_key { &Key::DEFAULT } else { scbk };
        CpChallenge {
            keys: SessionKeys::derive(key, &rnd_a),
            rnd_a,
            default_key,
        }
    }

    /// RND.A for the osdp_CHLNG payload.
    pub fn rnd_a(&self) -> [u8; 8] {
        self.rnd_a
    }

    /// SCB data byte naming the key in use.
    pub fn key_select(&self) -> u8 {
        if self.default_key {
            KEY_SELECT_DEFAULT
        } else {
            KEY_SELECT_SCBK
        }
    }

    /// Verifies the PD's osdp_CCRYPT (RND.B and client cryptogram). On
    /// success send osdp_SCRYPT with [`CpPending::server_cryptogram`].
    pub fn verify(
        self,
        rnd_b: &[u8; 8],
        client_cryptogram: &[u8; BLOCK],
    ) -> Result<CpPending, ScError> {
        let expected = self.keys.client_cryptogram(&self.rnd_a, rnd_b);
        if !ct_eq(&expected, client_cryptogram) {
            return Err(ScError::BadCryptogram);
        }
        let server_cryptogram = self.keys.server_cryptogram(&self.rnd_a, rnd_b);
        Ok(CpPending {
            keys: self.keys,
            server_cryptogram,
            default_key: self.default_key,
        })
    }
}

/// Control panel, step 2: server cryptogram sent, waiting for osdp_RMAC_I.
pub struct CpPending {
    keys: SessionKeys,
    server_cryptogram: [u8; BLOCK],
    default_key: bool,
}

impl CpPending {
    /// Payload of osdp_SCRYPT.
    pub fn server_cryptogram(&self) -> [u8; BLOCK] {
        self.server_cryptogram
    }

    /// SCB data byte naming the key in use.
    pub fn key_select(&self) -> u8 {
        if self.default_key {
            KEY_SELECT_DEFAULT
        } else {
            KEY_SELECT_SCBK
        }
    }

    /// Checks the initial R-MAC and opens the session.
    pub fn establish(self, rmac_i: &[u8; BLOCK]) -> Result<Session, ScError> {
        let expected = self.keys.initial_rmac(&self.server_cryptogram);
        if !ct_eq(&expected, rmac_i) {
            return Err(ScError::BadInitialRmac);
        }
        Ok(Session {
            keys: self.keys,
            c_mac: [0; BLOCK],
            r_mac: expected,
            default_key: self.default_key,
        })
    }
}

/// Peripheral device, step 1: osdp_CCRYPT sent, waiting for osdp_SCRYPT.
pub struct PdChallenge {
    keys: SessionKeys,
    rnd_a: [u8; 8],
    rnd_b: [u8; 8],
    default_key: bool,
}

impl PdChallenge {
    /// Answers osdp_CHLNG: derives keys from `scbk` and RND.A, with the
    /// caller's fresh random RND.B. Reply osdp_CCRYPT with
    /// [`Self::client_cryptogram`].
    pub fn new(scbk: &Key, default_key: bool, rnd_a: [u8; 8], rnd_b: [u8; 8]) -> PdChallenge {
        let key = if default_key { &Key::DEFAULT } else { scbk };
        PdChallenge {
            keys: SessionKeys::derive(key, &rnd_a),
            rnd_a,
            rnd_b,
            default_key,
        }
    }

    /// RND.B and the client cryptogram for osdp_CCRYPT.
    pub fn client_cryptogram(&self) -> ([u8; 8], [u8; BLOCK]) {
        (
            self.rnd_b,
            self.keys.client_cryptogram(&self.rnd_a, &self.rnd_b),
        )
    }

    /// Verifies osdp_SCRYPT; on success returns the session and the initial
    /// R-MAC to send in osdp_RMAC_I.
    pub fn verify(
        self,
        server_cryptogram: &[u8; BLOCK],
    ) -> Result<(Session, [u8; BLOCK]), ScError> {
        let expected = self.keys.server_cryptogram(&self.rnd_a, &self.rnd_b);
        if !ct_eq(&expected, server_cryptogram) {
            return Err(ScError::BadCryptogram);
        }
        let rmac = self.keys.initial_rmac(&expected);
        Ok((
            Session {
                keys: self.keys,
                c_mac: [0; BLOCK],
                r_mac: rmac,
                default_key: self.default_key,
            },
            rmac,
        ))
    }
}

/// An established secure channel: holds the session keys and the MAC chain.
///
/// Commands are MACed with the last reply MAC as IV, replies with the last
/// command MAC, on both sides; so the same type serves CP and PD.
pub struct Session {
    keys: SessionKeys,
    c_mac: [u8; BLOCK],
    r_mac: [u8; BLOCK],
    default_key: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("default_key", &self.default_key)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.c_mac.zeroize();
        self.r_mac.zeroize();
    }
}

/// Direction of a secured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// CP to PD.
    Command,
    /// PD to CP.
    Reply,
}

impl Session {
    /// Whether the session runs on SCBK-D (install mode).
    pub fn uses_default_key(&self) -> bool {
        self.default_key
    }

    /// The SCB type and encrypted data for a packet with plaintext `data`.
    /// Empty data goes as SCS_15/16 (MAC only), otherwise SCS_17/18.
    pub fn encrypt(&self, dir: Direction, data: &[u8]) -> (u8, Vec<u8>) {
        if data.is_empty() {
            let kind = match dir {
                Direction::Command => frame::SCS_15,
                Direction::Reply => frame::SCS_16,
            };
            return (kind, Vec::new());
        }
        let iv = invert(self.chain_iv(dir));
        let enc = CbcEnc::inner_iv_init(self.keys.enc.clone(), &iv.into());
        let kind = match dir {
            Direction::Command => frame::SCS_17,
            Direction::Reply => frame::SCS_18,
        };
        (kind, enc.encrypt_padded_vec_mut::<Iso7816>(data))
    }

    /// Encodes a secured packet: `plain` encrypted (or MAC only when empty),
    /// the security block set, the MAC appended; `base` gives address,
    /// sequence, check and code. Advances the chain.
    pub fn seal(
        &mut self,
        dir: Direction,
        base: frame::PacketBuilder<'_>,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), frame::FrameError> {
        let (kind, sealed) = self.encrypt(dir, plain);
        frame::PacketBuilder {
            scb: Some((kind, &[])),
            data: &sealed,
            ..base
        }
        .encode(out, Some(&mut |m: &[u8]| self.sign(dir, m)))
    }

    /// Computes the MAC of an outgoing packet (SOM..data) and advances the
    /// chain. Pass to [`frame::PacketBuilder::encode`].
    pub fn sign(&mut self, dir: Direction, mac_input: &[u8]) -> [u8; MAC_LEN] {
        let mac = self.keys.mac(self.chain_iv(dir), mac_input);
        *self.chain_slot(dir) = mac;
        [mac[0], mac[1], mac[2], mac[3]]
    }

    /// Verifies an incoming secured packet and returns its plaintext data.
    /// On any failure the session is consumed: the caller must handshake
    /// again (never fall back to clear text).
    pub fn open(mut self, dir: Direction, packet: &Packet) -> Result<(Session, Vec<u8>), ScError> {
        let (Some(scb), Some(mac)) = (packet.security_block(), packet.mac()) else {
            return Err(ScError::NotSecured);
        };
        let expected = self.keys.mac(self.chain_iv(dir), packet.mac_input());
        if !ct_eq(&expected[..MAC_LEN], &mac) {
            return Err(ScError::BadMac);
        }
        *self.chain_slot(dir) = expected;
        let data = packet.data();
        if !frame::scb_is_encrypted(scb.kind) {
            return Ok((self, data.to_vec()));
        }
        if data.is_empty() {
            // Some PDs send an empty SCS_18 for a data-less reply; tolerate it.
            return Ok((self, Vec::new()));
        }
        if data.len() % BLOCK != 0 {
            return Err(ScError::BadCiphertext);
        }
        // IV is the inverse of the MAC this packet chained on.
        let iv = invert(self.chain_iv(dir));
        let dec = CbcDec::inner_iv_init(self.keys.enc.clone(), &iv.into());
        let plain = dec
            .decrypt_padded_vec_mut::<Iso7816>(data)
            .map_err(|_| ScError::BadCiphertext)?;
        Ok((self, plain))
    }

    /// The MAC a packet in `dir` chains on: the last reply MAC for commands,
    /// the last command MAC for replies.
    fn chain_iv(&self, dir: Direction) -> &[u8; BLOCK] {
        match dir {
            Direction::Command => &self.r_mac,
            Direction::Reply => &self.c_mac,
        }
    }

    fn chain_slot(&mut self, dir: Direction) -> &mut [u8; BLOCK] {
        match dir {
            Direction::Command => &mut self.c_mac,
            Direction::Reply => &mut self.r_mac,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Check, Decoder, PacketBuilder};

    /// Annex E vectors, kept as a file so they can be read beside the spec.
    fn vector(name: &str) -> Vec<u8> {
        let text = include_str!("../testdata/annex_e_sc.txt");
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == name {
                    let v: String = v.split_whitespace().collect();
                    return (0..v.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                        .collect();
                }
            }
        }
        panic!("no vector {name}");
    }

    fn arr8(v: Vec<u8>) -> [u8; 8] {
        v.try_into().unwrap()
    }
    fn arr16(v: Vec<u8>) -> [u8; 16] {
        v.try_into().unwrap()
    }

    fn raw_key(c: &Aes128, tag: u8, rnd_a: &[u8; 8]) -> [u8; 16] {
        let mut block = [0u8; 16];
        block[0] = 1;
        block[1] = tag;
        block[2..8].copy_from_slice(&rnd_a[..6]);
        let mut b = block.into();
        c.encrypt_block(&mut b);
        b.into()
    }

    #[test]
    fn annex_e_session_keys() {
        let scbk = Key::from_slice(&vector("scbk_d")).unwrap();
        assert!(scbk.is_default());
        let rnd_a = arr8(vector("rnd_a"));
        let base = Aes128::new(&scbk.0.into());
        assert_eq!(raw_key(&base, 0x82, &rnd_a).to_vec(), vector("s_enc"));
        assert_eq!(raw_key(&base, 0x01, &rnd_a).to_vec(), vector("s_mac1"));
        assert_eq!(raw_key(&base, 0x02, &rnd_a).to_vec(), vector("s_mac2"));
    }

    #[test]
    fn annex_e_cryptograms_and_initial_rmac() {
        let rnd_a = arr8(vector("rnd_a"));
        let rnd_b = arr8(vector("rnd_b"));
        let client = arr16(vector("client_cryptogram"));
        let server = arr16(vector("server_cryptogram"));
        let rmac_i = arr16(vector("rmac_i"));

        // PD side computes the client cryptogram and checks the server's.
        let pd = PdChallenge::new(&Key::DEFAULT, true, rnd_a, rnd_b);
        assert_eq!(pd.client_cryptogram(), (rnd_b, client));
        let (_, pd_rmac) = pd.verify(&server).unwrap();
        assert_eq!(pd_rmac, rmac_i);

        // CP side checks the client cryptogram, produces the server's.
        let cp = CpChallenge::new(&Key::new([0xAA; 16]), true, rnd_a);
        assert_eq!(cp.key_select(), KEY_SELECT_DEFAULT);
        let pending = cp.verify(&rnd_b, &client).unwrap();
        assert_eq!(pending.server_cryptogram(), server);
        let session = pending.establish(&rmac_i).unwrap();
        assert!(session.uses_default_key());
    }

    #[test]
    fn wrong_key_fails_cryptogram_check_on_both_sides() {
        let rnd_a = [1; 8];
        let rnd_b = [2; 8];
        let pd = PdChallenge::new(&Key::new([7; 16]), false, rnd_a, rnd_b);
        let (rb, client) = pd.client_cryptogram();
        let cp = CpChallenge::new(&Key::new([8; 16]), false, rnd_a);
        assert!(matches!(
            cp.verify(&rb, &client),
            Err(ScError::BadCryptogram)
        ));

        let cp = CpChallenge::new(&Key::new([7; 16]), false, rnd_a);
        let pending = cp.verify(&rb, &client).unwrap();
        let wrong_pd = PdChallenge::new(&Key::new([9; 16]), false, rnd_a, rnd_b);
        assert!(matches!(
            wrong_pd.verify(&pending.server_cryptogram()),
            Err(ScError::BadCryptogram)
        ));
        let mut bad_rmac = [0u8; 16];
        bad_rmac[0] = 1;
        assert!(matches!(
            pending.establish(&bad_rmac),
            Err(ScError::BadInitialRmac)
        ));
    }

    fn pair() -> (Session, Session) {
        let key = Key::new([0x5A; 16]);
        let rnd_a = [3; 8];
        let pd = PdChallenge::new(&key, false, rnd_a, [4; 8]);
        let (rnd_b, client) = pd.client_cryptogram();
        let pending = CpChallenge::new(&key, false, rnd_a)
            .verify(&rnd_b, &client)
            .unwrap();
        let (pd_session, rmac) = pd.verify(&pending.server_cryptogram()).unwrap();
        (pending.establish(&rmac).unwrap(), pd_session)
    }

    fn seal(s: &mut Session, dir: Direction, code: u8, plain: &[u8]) -> Packet {
        let b = PacketBuilder {
            address: 1,
            reply: dir == Direction::Reply,
            sequence: 1,
            check: Check::Crc16,
            mark: true,
            scb: None,
            code,
            data: &[],
        };
        let mut out = Vec::new();
        s.seal(dir, b, plain, &mut out).unwrap();
        let mut d = Decoder::default();
        d.push(&out);
        d.next_packet().unwrap()
    }

    #[test]
    fn mac_chain_and_encryption_round_trip_many_exchanges() {
        let (mut cp, mut pd) = pair();
        for i in 0..40u8 {
            let cmd: Vec<u8> = (0..i).collect();
            let p = seal(&mut cp, Direction::Command, 0x69, &cmd);
            if cmd.is_empty() {
                assert_eq!(p.security_block().unwrap().kind, frame::SCS_15);
            } else {
                assert_eq!(p.security_block().unwrap().kind, frame::SCS_17);
                assert_ne!(p.data(), &cmd[..], "data must not travel in clear");
            }
            let (next, plain) = pd.open(Direction::Command, &p).unwrap();
            pd = next;
            assert_eq!(plain, cmd);
            let reply: Vec<u8> = (0..(40 - i)).map(|x| x ^ 0x5A).collect();
            let r = seal(&mut pd, Direction::Reply, 0x50, &reply);
            let (next, plain) = cp.open(Direction::Reply, &r).unwrap();
            cp = next;
            assert_eq!(plain, reply);
        }
    }

    #[test]
    fn replayed_or_tampered_packet_is_rejected() {
        let (mut cp, pd) = pair();
        let p1 = seal(&mut cp, Direction::Command, 0x60, &[]);
        let (pd, _) = pd.open(Direction::Command, &p1).unwrap();
        // A retry before any reply chains on the same R-MAC and verifies...
        let (mut pd, _) = pd.open(Direction::Command, &p1).unwrap();
        let r = seal(&mut pd, Direction::Reply, 0x40, &[]);
        let (_cp, _) = cp.open(Direction::Reply, &r).unwrap();
        // ...but once a reply moved the chain on, replaying it fails.
        assert!(matches!(
            pd.open(Direction::Command, &p1),
            Err(ScError::BadMac)
        ));

        let (mut cp, pd) = pair();
        let p = seal(&mut cp, Direction::Command, 0x6A, &[1, 2, 3, 4, 5]);
        let mut bytes = p.as_bytes().to_vec();
        bytes[8] ^= 0x01; // flip a ciphertext bit, fix the CRC
        let n = bytes.len();
        let crc = frame::crc16(&bytes[..n - 2]).to_le_bytes();
        bytes[n - 2..].copy_from_slice(&crc);
        let tampered = Packet::parse(bytes, false).unwrap();
        assert!(matches!(
            pd.open(Direction::Command, &tampered),
            Err(ScError::BadMac)
        ));
    }

    #[test]
    fn clear_packet_is_not_accepted_as_secure() {
        let (_, pd) = pair();
        let b = PacketBuilder {
            address: 1,
            reply: false,
            sequence: 1,
            check: Check::Crc16,
            mark: false,
            scb: None,
            code: 0x60,
            data: &[],
        };
        let mut out = Vec::new();
        b.encode(&mut out, None).unwrap();
        let p = Packet::parse(out, false).unwrap();
        assert!(matches!(
            pd.open(Direction::Command, &p),
            Err(ScError::NotSecured)
        ));
    }

    #[test]
    fn mac_of_block_aligned_and_empty_messages() {
        let keys = SessionKeys::derive(&Key::DEFAULT, &[0; 8]);
        let iv = [0u8; 16];
        // Distinct lengths give distinct MACs; aligned input is not padded, so
        // 16 bytes ending 0x80 00.. differs from 15 bytes padded to the same.
        let mut a = [0u8; 16];
        a[15] = 0x80;
        let mut b = [0u8; 16];
        b[14] = 0x80;
        assert_ne!(keys.mac(&iv, &a), keys.mac(&iv, &b[..14]));
        assert_eq!(keys.mac(&iv, &b), keys.mac(&iv, &b[..14]));
        assert_ne!(keys.mac(&iv, &[]), keys.mac(&iv, &[0x00]));
    }

    #[test]
    fn key_hex_parsing_and_redaction() {
        let k = Key::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(k.expose()[15], 0x0f);
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
        assert!(Key::from_hex("0001").is_err());
        assert!(Key::from_hex("zz0102030405060708090a0b0c0d0e0f").is_err());
        assert!(Key::from_hex("é00102030405060708090a0b0c0d0e").is_err());
        // Found by fuzzing: a leading '+' per digit pair was accepted.
        assert!(Key::from_hex(&"+0".repeat(16)).is_err());
    }
}
