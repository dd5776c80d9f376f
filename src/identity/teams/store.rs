//! SQL for teams and their members (lookup by name is `identity::store::find_team`).

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::identity::users::store::TeamRow;
use crate::infra::db::{Db, on_pool};

pub async fn insert_team(
    db: &Db,
    org_id: i64,
    name: &str,
    role: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TeamRow> {
    const SQL: &str = "INSERT INTO teams (org_id, name, role, created_at) VALUES ($1, $2, $3, $4) \
                       RETURNING id, org_id, name, role, created_at";
    Ok(on_pool!(db, p => sqlx::query_as::<_, TeamRow>(SQL)
        .bind(org_id).bind(name).bind(role).bind(now).fetch_one(p).await)?)
}

/// A page of the org's teams by name (the `(org_id, name)` unique index).
pub async fn list_teams(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<TeamRow>> {
    const SQL: &str = "SELECT id, org_id, name, role, created_at FROM teams WHERE org_id = $1 \
                       ORDER BY name LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, TeamRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

pub async fn set_role(db: &Db, team_id: i64, role: Option<&str>) -> Result<()> {
    const SQL: &str = "UPDATE teams SET role = $1 WHERE id = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(role).bind(team_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Deletes a team; its memberships, policy attachments and team tokens go with it (cascade).
pub async fn delete_team(db: &Db, team_id: i64) -> Result<bool> {
    const SQL: &str = "DELETE FROM teams WHERE id = $1";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(team_id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Adds a user to a team; adding a member again changes nothing.
pub async fn add_member(db: &Db, team_id: i64, user_id: i64) -> Result<()> {
    const SQL: &str =
        "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    on_pool!(db, p => sqlx::query(SQL).bind(team_id).bind(user_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Removes the user named `user` from a team; false when they were not in it.
pub async fn remove_member(db: &Db, team_id: i64, user: &str) -> Result<bool> {
    const SQL: &str = "DELETE FROM team_members WHERE team_id = $1 \
                       AND user_id = (SELECT id FROM users WHERE name = $2)";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(team_id).bind(user)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamMemberRow {
    pub name: String,
}

/// A page of a team's members in the order of the `(team_id, user_id)` key.
pub async fn list_members(
    db: &Db,
    team_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<TeamMemberRow>> {
    const SQL: &str = "SELECT u.name FROM team_members tm JOIN users u ON u.id = tm.user_id \
                       WHERE tm.team_id = $1 ORDER BY tm.user_id LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, TeamMemberRow>(SQL)
        .bind(team_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// The IdP groups mapped to a team, sorted.
pub async fn idp_groups(db: &Db, team_id: i64) -> Result<Vec<String>> {
    const SQL: &str = "SELECT idp_group FROM team_idp_groups WHERE team_id = $1 ORDER BY idp_group";
    let rows: Vec<(String,)> =
        on_pool!(db, p => sqlx::query_as(SQL).bind(team_id).fetch_all(p).await)?;
    Ok(rows.into_iter().map(|(g,)| g).collect())
}

/// Replaces the IdP groups mapped to a team.
pub async fn set_idp_groups(db: &Db, team_id: i64, groups: &[String]) -> Result<()> {
    const DELETE: &str = "DELETE FROM team_idp_groups WHERE team_id = $1";
    const INSERT: &str = "INSERT INTO team_idp_groups (team_id, idp_group) VALUES ($1, $2) \
                          ON CONFLICT DO NOTHING";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(DELETE).bind(team_id).execute(&mut *tx).await?;
        for group in groups {
            sqlx::query(INSERT).bind(team_id).bind(group).execute(&mut *tx).await?;
        }
        tx.commit().await
    })?;
    Ok(())
}

/// A team reached through the group mapping, or holding a membership the mapping made.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MappedTeam {
    pub team_id: i64,
    pub org_id: i64,
    pub org_name: String,
    pub team_name: String,
    /// The IdP group (for mapped teams); empty for memberships.
    pub idp_group: String,
}

/// Every group-to-team mapping (a short list that admins keep).
pub async fn all_mappings(db: &Db) -> Result<Vec<MappedTeam>> {
    const SQL: &str = "SELECT t.id AS team_id, t.org_id, o.name AS org_name, \
                       t.name AS team_name, g.idp_group FROM team_idp_groups g \
                       JOIN teams t ON t.id = g.team_id JOIN orgs o ON o.id = t.org_id \
                       ORDER BY t.id";
    Ok(on_pool!(db, p => sqlx::query_as::<_, MappedTeam>(SQL).fetch_all(p).await)?)
}

/// The user's team memberships: (team id, made by the mapping).
pub async fn user_team_memberships(db: &Db, user_id: i64) -> Result<Vec<MappedTeam>> {
    const SQL: &str = "SELECT t.id AS team_id, t.org_id, o.name AS org_name, \
                       t.name AS team_name, COALESCE(tm.added_by, '') AS idp_group \
                       FROM team_members tm JOIN teams t ON t.id = tm.team_id \
                       JOIN orgs o ON o.id = t.org_id WHERE tm.user_id = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, MappedTeam>(SQL)
        .bind(user_id).fetch_all(p).await)?)
}

/// Adds the user to a team (and, if needed, to its org with the least role) on the
/// mapping's behalf.
pub async fn add_idp_member(
    db: &Db,
    org_id: i64,
    team_id: i64,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    const MEMBER: &str = "INSERT INTO org_members (org_id, user_id, role, created_at, added_by) \
                          VALUES ($1, $2, 'outputs', $3, 'idp') ON CONFLICT DO NOTHING";
    const TEAM: &str = "INSERT INTO team_members (team_id, user_id, added_by) \
                        VALUES ($1, $2, 'idp') ON CONFLICT DO NOTHING";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(MEMBER).bind(org_id).bind(user_id).bind(now).execute(&mut *tx).await?;
        sqlx::query(TEAM).bind(team_id).bind(user_id).execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}

/// Takes away a membership the mapping made, and the org membership it made once the user
/// has no team left in that org.
pub async fn remove_idp_member(db: &Db, org_id: i64, team_id: i64, user_id: i64) -> Result<()> {
    const TEAM: &str =
        "DELETE FROM team_members WHERE team_id = $1 AND user_id = $2 AND added_by = 'idp'";
    const MEMBER: &str = "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2 \
                          AND added_by = 'idp' AND NOT EXISTS (SELECT 1 FROM team_members tm \
                          JOIN teams t ON t.id = tm.team_id WHERE tm.user_id = $2 AND t.org_id = $1)";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(TEAM).bind(team_id).bind(user_id).execute(&mut *tx).await?;
        sqlx::query(MEMBER).bind(org_id).bind(user_id).execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}
