use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "instance_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub uuid: Uuid,
    pub name: String,
    pub date: DateTimeUtc,
    pub instance_uuid: Uuid,
    pub tenant_id: String,
    pub status: String,
    pub description: Option<String>,
    pub host: String,
    pub size_bytes: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub includes_memory: bool,
    /// JSON array of strings.
    pub disk_formats: String,
    /// JSON `CpuInfo`.
    pub cpu: Option<String>,
    pub cpu_xml: Option<String>,
    pub snapshot_kind: String,
    pub parent: Option<Uuid>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub updated_at: DateTimeUtc,
    /// libvirt snapshot XML from the save (to redefine the snapshot after a move).
    pub snapshot_xml: Option<String>,
    /// When the maintenance loop deletes the state (NULL: never).
    pub expires_at: Option<DateTimeUtc>,
    /// The schedule that made the state (NULL: a user's save).
    pub schedule_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
