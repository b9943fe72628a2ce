//! The JSON view of a receipt: byte strings as hex, FLOPs as a decimal string.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{RECEIPT_VERSION, Receipt};
use crate::hex;

impl Serialize for Receipt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Receipt", 10)?;
        st.serialize_field("version", &RECEIPT_VERSION)?;
        st.serialize_field("request", &self.request)?;
        st.serialize_field("output", &self.output)?;
        st.serialize_field("trace", &self.trace)?;
        st.serialize_field("cost", &self.cost)?;
        st.serialize_field("config", &self.config)?;
        st.serialize_field("vk_hash", &hex::encode(&self.vk_hash))?;
        st.serialize_field("provider", &self.provider)?;
        st.serialize_field("cu_proof", &hex::encode(&self.cu_proof))?;
        st.serialize_field("audits", &self.audits)?;
        st.end()
    }
}
