//! The token room: everything between a token's text and a verified signature, on
//! `jsonwebtoken`. Its files, each using only those before it:
//! `alg` (the algorithm leaf, and which algorithms this build has) · `spki` (RSA public keys as
//! DER) · `jwk` (JWK key material, key choice) · `x509` (Google's certificate sets) · `set` (either form) · `keys` (fetched key sets per provider) ·
//! `hostcrypto` (the encoding for Envoy's `verify_signature`) · `vmcrypto` (RustCrypto in the
//! VM) · `jws` (compact JWS decoding and svcauth's `jsonwebtoken` crypto provider).
//! Uses `contract` (reason codes) from outside the room.

pub mod alg;
pub mod hostcrypto;
pub mod jwk;
pub mod jws;
pub mod keys;
pub mod set;
pub mod spki;
pub mod vmcrypto;
pub mod x509;
