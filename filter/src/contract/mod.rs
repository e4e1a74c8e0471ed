//! The public contract, as code: the reason codes and the one place that maps a reason to a
//! status, an RFC 6750 challenge and a body (`reason`), and the header and property names
//! svcauth sets or strips (`names`). The bottom room: it uses nothing else of the crate, and
//! every other room may use it. Renaming anything here breaks operators' configs, dashboards
//! or upstreams; add, never rename.

pub mod names;
pub mod reason;
