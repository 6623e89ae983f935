"""shops: how a shop was installed, and the token-refresh claim

Revision ID: auth_0001
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import plugin.db

revision = "auth_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("installed_via", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("token_claimed_until", plugin.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("token_claimed_until")
        batch_op.drop_column("installed_via")
