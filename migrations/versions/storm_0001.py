"""order_tag_batches (order tags added by one bulk mutation) and the tasks' tag deferral

Revision ID: storm_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import plugin.db

revision = "storm_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_tag_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.Column("task_ids", sa.JSON(), nullable=False),
        sa.Column("operation_id", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("checked_at", plugin.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", plugin.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", plugin.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_order_tag_batches_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_tag_batches")),
    )
    with op.batch_alter_table("order_tag_batches", schema=None) as batch_op:
        batch_op.create_index("ix_order_tag_batches_shop_state", ["shop_id", "state"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("order_tag_deferred_at", plugin.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("order_tag_batch_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_tasks_order_tag_batch_id_order_tag_batches"),
            "order_tag_batches",
            ["order_tag_batch_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tasks_order_tag_batch_id_order_tag_batches"), type_="foreignkey")
        batch_op.drop_column("order_tag_batch_id")
        batch_op.drop_column("order_tag_deferred_at")
    with op.batch_alter_table("order_tag_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_order_tag_batches_shop_state")
    op.drop_table("order_tag_batches")
