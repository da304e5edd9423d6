"""code_hosts.<platform>.bot_login: the gateway names the login its token acts as
(a GitHub App installation token cannot read /user) and finds its own plan comment
by it, without asking the host who it is."""

from __future__ import annotations

import pytest
from codehost import CodeHostServer

from runner.approval.host import open_host
from runner.approval.model import Review

HEAD = "ab" * 20


def user_requests(server: CodeHostServer) -> list[str]:
    return [
        p for _, p in server.requests if p.rstrip("/").endswith(("/api/v3/user", "/api/v4/user"))
    ]


@pytest.mark.parametrize("platform", ["github", "gitlab"])
@pytest.mark.parametrize("bot_login", ["signoff-bot", None])
def test_the_named_bot_login_is_used_and_user_is_never_asked(
    platform: str, bot_login: str | None
) -> None:
    with CodeHostServer() as server:
        server.add_user("signoff-bot", bot=True)
        server.add_user("carol")
        server.add_repo(platform, "acme/ehr")
        server.add_review(platform, "acme/ehr", 3, author="carol", head_sha=HEAD)
        url = server.github_url if platform == "github" else server.gitlab_url
        host = open_host(platform, url, server.token_of("signoff-bot"), bot_login=bot_login)
        review = Review(platform, url, "acme/ehr", 3, HEAD)
        body = "<!-- signoff:plan db=ehr -->\nplan\n"
        try:
            first = host.upsert_plan_comment(review, database="ehr", body=body)
            again = host.find_plan_comment(review, database="ehr")
        finally:
            host.close()
        assert again is not None and again.id == first.id
        # Named: never asked; not named: asked once, as the fallback.
        assert bool(user_requests(server)) == (bot_login is None)
