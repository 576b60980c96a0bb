//! Who is in a consult's group: creating it, checking every member
//! against the directory, adding and removing devices with commits, and
//! joining from a Welcome.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use openmls::prelude::{
    MlsGroup, MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn,
    MlsMessageOut, StagedWelcome, tls_codec::DeserializeBytes,
};
use openmls_traits::OpenMlsProvider;
use samenop_proto::v1;
use uuid::Uuid;

use super::{
    CIPHERSUITE, Inner, Messenger, POST_ATTEMPTS, ThreadRecord, group_id,
    keys::validate_key_package, local, member_device, not_member, rejected, serialize,
};
use crate::{ClientError, Result, consult::ParticipantStatus};

/// Devices by id: owner professional and listed signature key.
pub(super) type Listed = HashMap<Uuid, (Uuid, Vec<u8>)>;

/// What the directory says of a consult's group, read from the server.
pub(super) struct Roster {
    /// The consult's owner now.
    pub(super) owner: Uuid,
    /// The active devices of its active participants: exactly who must be
    /// in the group.
    pub(super) current: Listed,
    /// Every listed device (revoked ones too) of everyone who takes or took
    /// part, past owners included: who an earlier commit may have added.
    /// A commit is checked against these, not against `current`, because
    /// it is read later than it was made: a device revoked (or a specialist
    /// gone) since was rightly added then, and the owner's next commit
    /// removes it. The server sent that device its Welcome only while it
    /// was current.
    pub(super) known: Listed,
}

/// What [`Messenger::sync_members`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Devices added to the group.
    pub added: Vec<Uuid>,
    /// Devices removed from the group.
    pub removed: Vec<Uuid>,
}

impl Messenger {
    /// Creates the group of a consult this device's professional owns, at
    /// epoch 0, before anything is posted in its thread.
    ///
    /// # Errors
    /// [`ClientError::FailedPrecondition`] when the thread already started.
    pub async fn create_thread(&self, consult: Uuid) -> Result<()> {
        let mut inner = self.inner.lock().await;
        if inner.group(consult)?.is_some() {
            return Ok(());
        }
        let page = self.fetch(consult, 1).await?;
        if page.latest_sequence != 0 {
            return Err(ClientError::FailedPrecondition(format!(
                "the thread of consult {consult} already started"
            )));
        }
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let credential = inner.credential.clone();
        let group = MlsGroup::new_with_group_id(
            inner.state.provider(),
            &inner.signer,
            &config,
            group_id(consult),
            credential,
        )
        .map_err(|e| local("cannot create the group", e))?;
        let thread = ThreadRecord {
            from_start: true,
            ..inner.thread(consult)?
        };
        inner.persist(consult, &thread, Vec::new())?;
        inner.keep_group(consult, group);
        Ok(())
    }

    /// The active devices of the consult's active participants, with their
    /// listed signature keys, and every device that may have been added by
    /// an earlier commit (see [`Roster`]).
    pub(super) async fn roster(&self, consult: Uuid) -> Result<Roster> {
        let c = self.client.consult(consult).await?;
        let mut roster = Roster {
            owner: c.owner,
            current: HashMap::new(),
            known: HashMap::new(),
        };
        // A consult whose basis ended (suspended) or that ended keeps only
        // its owner in the group: nobody else may read what follows.
        let open = matches!(
            c.state,
            crate::consult::ConsultState::Requested | crate::consult::ConsultState::Accepted
        );
        let active: BTreeSet<Uuid> = c
            .participants
            .iter()
            .filter(|p| open && p.status == ParticipantStatus::Active)
            .map(|p| p.professional)
            .chain([c.owner])
            .collect();
        let everyone: BTreeSet<Uuid> = c
            .participants
            .iter()
            .map(|p| p.professional)
            .chain([c.owner])
            .collect();
        for professional in everyone {
            let (_, listed) = self.client.professional_with_devices(professional).await?;
            for device in listed {
                let entry = (professional, device.signature_public_key);
                if device.revoked_at.is_none() && active.contains(&professional) {
                    roster.current.insert(device.id, entry.clone());
                }
                roster.known.insert(device.id, entry);
            }
        }
        Ok(roster)
    }

    /// Checks that every member of `group` not in `known` is one of
    /// `listed`, with the listed key.
    pub(super) fn check_new_members(
        consult: Uuid,
        group: &MlsGroup,
        known: &BTreeSet<Vec<u8>>,
        listed: &Listed,
    ) -> Result<()> {
        for member in group.members() {
            if known.contains(&member.signature_key) {
                continue;
            }
            let device = member_device(&member.credential).ok_or_else(|| {
                ClientError::GroupMismatch(format!(
                    "a member of consult {consult}'s group has a credential that names no device"
                ))
            })?;
            match listed.get(&device) {
                Some((_, key)) if *key == member.signature_key => {}
                Some(_) => {
                    return Err(ClientError::GroupMismatch(format!(
                        "device {device} in consult {consult}'s group has another signature key \
                         than the directory lists for it"
                    )));
                }
                None => {
                    return Err(ClientError::GroupMismatch(format!(
                        "device {device} in consult {consult}'s group is not a device of a \
                         participant of the consult"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks who a commit by `sender` removed (members `before` it and
    /// not in `group` now): only the owner's devices remove a device that
    /// must stay (an active device of an active participant); anyone may
    /// remove one that no longer belongs, as the specialists do after a
    /// handover.
    pub(super) fn check_removals(
        consult: Uuid,
        group: &MlsGroup,
        before: &BTreeMap<Vec<u8>, Option<Uuid>>,
        sender: Uuid,
        roster: &Roster,
    ) -> Result<()> {
        let by_owner = roster
            .known
            .get(&sender)
            .is_some_and(|(professional, _)| *professional == roster.owner);
        if by_owner {
            return Ok(());
        }
        let after: BTreeSet<Vec<u8>> = group.members().map(|m| m.signature_key).collect();
        for (key, device) in before {
            if !after.contains(key)
                && let Some(device) = device
                && roster.current.contains_key(device)
            {
                return Err(ClientError::GroupMismatch(format!(
                    "device {sender}, not the owner's, removed device {device} of a participant \
                     from consult {consult}'s group"
                )));
            }
        }
        Ok(())
    }

    /// Checks that the group's members are exactly the active devices of
    /// the consult's active participants, each with its listed key.
    ///
    /// # Errors
    /// [`ClientError::GroupMismatch`] naming the first difference.
    pub async fn verify_members(&self, consult: Uuid) -> Result<()> {
        let listed = self.roster(consult).await?.current;
        let mut inner = self.inner.lock().await;
        let group = inner.group(consult)?.ok_or_else(|| not_member(consult))?;
        Self::check_new_members(consult, group, &BTreeSet::new(), &listed)?;
        let members: BTreeSet<Uuid> = group
            .members()
            .filter_map(|m| member_device(&m.credential))
            .collect();
        if let Some(missing) = listed.keys().find(|d| !members.contains(d)) {
            return Err(ClientError::GroupMismatch(format!(
                "device {missing} of a participant is not in consult {consult}'s group yet"
            )));
        }
        Ok(())
    }

    /// Brings the group's members in line with the consult's participants:
    /// removes devices of professionals who no longer take part (or revoked
    /// devices), then adds every active device of every active participant
    /// that is missing, with key packages claimed from the server. For the
    /// consult's owner, and for a specialist after a handover (see
    /// [`Messenger::follow`]).
    ///
    /// # Errors
    /// [`ClientError`] when a step fails; what was committed stays.
    pub async fn sync_members(&self, consult: Uuid) -> Result<MembershipChange> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        let mut change = MembershipChange::default();
        for _ in 0..POST_ATTEMPTS {
            self.catch_up(consult).await?;
            let listed = self.roster(consult).await?.current;
            let mut inner = self.inner.lock().await;
            let mut group = inner.group_to_commit(consult)?;
            let members: Vec<(openmls::prelude::LeafNodeIndex, Option<Uuid>)> = group
                .members()
                .map(|m| (m.index, member_device(&m.credential)))
                .collect();
            let stale: Vec<_> = members
                .iter()
                .filter(|(index, device)| {
                    *index != group.own_leaf_index()
                        && device.is_none_or(|d| !listed.contains_key(&d))
                })
                .collect();
            if !stale.is_empty() {
                let leaves: Vec<_> = stale.iter().map(|(index, _)| *index).collect();
                let (commit, _, _) = group
                    .remove_members(inner.state.provider(), &inner.signer, &leaves)
                    .map_err(|e| local("cannot make the removal commit", e))?;
                let removed: Vec<Uuid> = stale.iter().filter_map(|(_, d)| *d).collect();
                if self
                    .post_commit(&mut inner, consult, &mut group, &commit, Vec::new())
                    .await?
                {
                    change.removed.extend(removed);
                }
                continue;
            }
            let present: BTreeSet<Uuid> = members.iter().filter_map(|(_, d)| *d).collect();
            let missing: BTreeSet<Uuid> = listed
                .iter()
                .filter(|(device, _)| !present.contains(device))
                .map(|(_, (professional, _))| *professional)
                .collect();
            if missing.is_empty() {
                return Ok(change);
            }
            let mut packages = Vec::new();
            let mut added = Vec::new();
            for professional in missing {
                for claimed in self.claim(consult, professional).await? {
                    let device = crate::types::uuid("device_id", &claimed.device_id)?;
                    if present.contains(&device) {
                        continue;
                    }
                    let package = validate_key_package(&inner, device, &claimed.key_package)?;
                    let credential = package.leaf_node().credential();
                    let listed_key = listed.get(&device).map(|(_, key)| key.as_slice());
                    if member_device(credential) != Some(device)
                        || listed_key != Some(package.leaf_node().signature_key().as_slice())
                    {
                        return Err(ClientError::GroupMismatch(format!(
                            "the key package claimed for device {device} is not signed with its \
                             listed key"
                        )));
                    }
                    packages.push(package);
                    added.push(device);
                }
            }
            if packages.is_empty() {
                return Ok(change);
            }
            let (commit, welcome, _) = group
                .add_members(inner.state.provider(), &inner.signer, &packages)
                .map_err(|e| local("cannot make the add commit", e))?;
            let welcomes = vec![v1::WelcomeDelivery {
                welcome: serialize(&welcome)?,
                device_ids: added.iter().map(Uuid::to_string).collect(),
            }];
            if self
                .post_commit(&mut inner, consult, &mut group, &commit, welcomes)
                .await?
            {
                drop(inner);
                self.catch_up(consult).await?;
                change.added.extend(added);
                return Ok(change);
            }
        }
        Err(ClientError::Aborted(format!(
            "the thread of consult {consult} kept moving; sync again"
        )))
    }

    async fn claim(&self, consult: Uuid, professional: Uuid) -> Result<Vec<v1::ClaimedKeyPackage>> {
        let request = v1::ClaimKeyPackagesRequest {
            consult_id: consult.to_string(),
            professional_id: professional.to_string(),
        };
        Ok(self
            .client
            .directory()
            .claim_key_packages(self.client.request(request)?)
            .await?
            .into_inner()
            .key_packages)
    }

    /// Posts a pending commit; merges it when accepted (`true`), drops it
    /// when the thread moved on (`false`: catch up and try again).
    async fn post_commit(
        &self,
        inner: &mut Inner,
        consult: Uuid,
        group: &mut MlsGroup,
        commit: &MlsMessageOut,
        welcomes: Vec<v1::WelcomeDelivery>,
    ) -> Result<bool> {
        let mut thread = inner.thread(consult)?;
        // The pending commit is on disk before it can be accepted: after a
        // crash, catching up finds it in the thread and merges it.
        inner.persist(consult, &thread, Vec::new())?;
        let request = v1::PostCommitRequest {
            consult_id: consult.to_string(),
            device_id: self.device.to_string(),
            epoch: group.epoch().as_u64(),
            commit: serialize(commit)?,
            welcomes,
            request_id: Uuid::new_v4().to_string(),
        };
        match self
            .threads()
            .post_commit(self.client.request(request)?)
            .await
        {
            Ok(answer) => {
                // Messages stored before the commit were made in the old
                // epoch: while some are unread, the commit stays pending and
                // catching up merges it when it reaches it.
                if answer.into_inner().sequence == thread.next_sequence {
                    group
                        .merge_pending_commit(inner.state.provider())
                        .map_err(|e| local("cannot merge the commit", e))?;
                    thread.next_sequence += 1;
                    inner.persist(consult, &thread, Vec::new())?;
                }
                Ok(true)
            }
            Err(status) if status.code() == tonic::Code::Aborted => {
                group
                    .clear_pending_commit(inner.state.provider().storage())
                    .map_err(|e| local("cannot drop the commit", e))?;
                inner.persist(consult, &thread, Vec::new())?;
                Ok(false)
            }
            Err(status) => {
                // A refusal voids the commit; a lost answer leaves it pending:
                // catching up merges it if the server stored it, and the next
                // commit drops it if not.
                if !matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Internal
                ) {
                    group
                        .clear_pending_commit(inner.state.provider().storage())
                        .map_err(|e| local("cannot drop the commit", e))?;
                    inner.persist(consult, &thread, Vec::new())?;
                }
                Err(status.into())
            }
        }
    }

    /// Renews this device's key material in a consult's group with a
    /// commit (post-compromise security). Retried after catching up when
    /// another member committed first.
    ///
    /// # Errors
    /// [`ClientError`] when the state or the server fails.
    pub async fn update_keys(&self, consult: Uuid) -> Result<u64> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        for _ in 0..POST_ATTEMPTS {
            self.catch_up(consult).await?;
            let mut inner = self.inner.lock().await;
            let mut group = inner.group_to_commit(consult)?;
            let bundle = group
                .self_update(
                    inner.state.provider(),
                    &inner.signer,
                    openmls::prelude::LeafNodeParameters::default(),
                )
                .map_err(|e| local("cannot make the update commit", e))?;
            let commit = bundle.into_commit();
            if self
                .post_commit(&mut inner, consult, &mut group, &commit, Vec::new())
                .await?
            {
                drop(inner);
                self.catch_up(consult).await?;
                return Ok(self.epoch(consult).await?.unwrap_or_default());
            }
        }
        Err(ClientError::Aborted(format!(
            "the thread of consult {consult} kept moving; update again"
        )))
    }

    /// Whether this device holds the consult's group: it made it, or
    /// joined it from a Welcome.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn joined(&self, consult: Uuid) -> Result<bool> {
        Ok(self.inner.lock().await.group(consult)?.is_some())
    }

    pub(super) async fn join(&self, consult: Uuid, welcome: &v1::WelcomeMessage) -> Result<()> {
        let listed = self.roster(consult).await?.known;
        let mut inner = self.inner.lock().await;
        let message = MlsMessageIn::tls_deserialize_exact_bytes(&welcome.welcome)
            .map_err(|e| rejected(consult, welcome.commit_sequence, e))?;
        let MlsMessageBodyIn::Welcome(body) = message.extract() else {
            return Err(rejected(consult, welcome.commit_sequence, "not a Welcome"));
        };
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .build();
        // A group this device was removed from gives way to the new one;
        // its own sender count goes on, so others see no repeat.
        let before = inner.thread(consult)?;
        // Another task of this device joined from this Welcome (or a later
        // one) while the lock was free: the group it made stands.
        if !before.removed
            && before.next_sequence > welcome.commit_sequence
            && inner.group(consult)?.is_some_and(MlsGroup::is_active)
        {
            return Ok(());
        }
        if let Some(mut old) = inner.take_group(consult)? {
            old.delete(inner.state.provider().storage())
                .map_err(|e| local("cannot drop the group it was removed from", e))?;
        }
        let group = StagedWelcome::new_from_welcome(inner.state.provider(), &config, body, None)
            .and_then(|staged| staged.into_group(inner.state.provider()))
            .map_err(|e| rejected(consult, welcome.commit_sequence, e));
        let group = match group {
            Ok(group) => group,
            Err(err) => {
                inner.roll_back();
                return Err(err);
            }
        };
        if group.group_id() != &group_id(consult) {
            inner.roll_back();
            return Err(rejected(
                consult,
                welcome.commit_sequence,
                "a Welcome for another group",
            ));
        }
        if let Err(err) = Self::check_new_members(consult, &group, &BTreeSet::new(), &listed) {
            inner.roll_back();
            return Err(err);
        }
        // The outbox stays: a message waiting to be sent goes in the new
        // group (one already stored gets its answer again by its id).
        let thread = ThreadRecord {
            next_sequence: welcome.commit_sequence + 1,
            from_start: welcome.commit_sequence == 1,
            sent: before.sent,
            outbox: before.outbox,
            ..ThreadRecord::default()
        };
        inner.persist(consult, &thread, Vec::new())?;
        inner.keep_group(consult, group);
        drop(inner);
        // The Welcome used one of this device's key packages. The join
        // stands whether or not the top-up gets through now; the next
        // join tries again.
        if let Err(err) = self.top_up_key_packages().await {
            tracing::warn!(error = %err, "key packages not topped up after joining a group");
        }
        Ok(())
    }
}
