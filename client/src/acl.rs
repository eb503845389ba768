//! ACL administration on [`Admin`]: add, list and remove bindings (docs/security.md,
//! "Authorization"). A binding and a filter are the protocol's `AclBinding` and `AclFilter`;
//! the broker checks every binding before it stores any.

use eddy_protocol::v1::{self, request};

use crate::{Admin, ClientError, Transport, expect_body};

impl<T: Transport> Admin<T> {
    /// Adds `bindings` (ALTER on the cluster); how many were new.
    pub async fn create_acls(&self, bindings: Vec<v1::AclBinding>) -> Result<u32, ClientError> {
        let body = request::Body::CreateAcls(v1::CreateAclsRequest { bindings });
        Ok(expect_body!(self.transport().call(body).await?, CreateAcls)?.created)
    }

    /// The bindings `filter` matches (DESCRIBE on the cluster), sorted by resource.
    pub async fn list_acls(
        &self,
        filter: v1::AclFilter,
    ) -> Result<Vec<v1::AclBinding>, ClientError> {
        let body = request::Body::ListAcls(v1::ListAclsRequest { filter: Some(filter) });
        Ok(expect_body!(self.transport().call(body).await?, ListAcls)?.bindings)
    }

    /// Removes the bindings `filter` matches (ALTER on the cluster); returns them.
    pub async fn delete_acls(
        &self,
        filter: v1::AclFilter,
    ) -> Result<Vec<v1::AclBinding>, ClientError> {
        let body = request::Body::DeleteAcls(v1::DeleteAclsRequest { filter: Some(filter) });
        Ok(expect_body!(self.transport().call(body).await?, DeleteAcls)?.deleted)
    }
}
