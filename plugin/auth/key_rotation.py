"""Re-encrypting every stored token with the newest TOKEN_ENCRYPTION_KEYS key.

Each shop's pair is rewritten by a compare-and-swap on the old ciphertext, so a refresh that
lands meanwhile is never overwritten (it is simply tried again on the next run).
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from sqlalchemy import or_, select, update

from plugin.auth.token_lock import rowcount
from plugin.errors import AppError
from plugin.models import Shop
from plugin.services import Services


def rotate_token_keys(services: Services) -> tuple[int, int]:
    """(shops rewritten, shops that changed meanwhile and were left for the next run)."""
    cipher = services.cipher
    with services.db.session() as session:
        ids = list(
            session.scalars(
                select(Shop.id).where(or_(Shop.access_token.is_not(None), Shop.refresh_token.is_not(None)))
            )
        )
    rotated = skipped = 0
    for shop_id in ids:
        with services.db.session() as session:
            row = session.execute(
                select(Shop.access_token, Shop.refresh_token).where(Shop.id == shop_id)
            ).one_or_none()
            if row is None:
                continue
            access, refresh = row
            try:
                new_access = cipher.rotate(access) if access else None
                new_refresh = cipher.rotate(refresh) if refresh else None
            except InvalidToken as error:
                raise AppError(
                    f"shop {shop_id}: a stored token opens with none of the configured keys; "
                    "keep the old key in TOKEN_ENCRYPTION_KEYS (after the new one) until rotated"
                ) from error
            guard = [Shop.id == shop_id]
            guard.append(Shop.access_token.is_(None) if access is None else Shop.access_token == access)
            guard.append(Shop.refresh_token.is_(None) if refresh is None else Shop.refresh_token == refresh)
            changed = rowcount(
                session.execute(
                    update(Shop)
                    .where(*guard)
                    .values(
                        access_token=new_access,
                        refresh_token=new_refresh,
                        updated_at=Shop.updated_at,
                    )
                    .execution_options(synchronize_session=False)
                )
            )
        if changed:
            rotated += 1
        else:
            skipped += 1
    return rotated, skipped
