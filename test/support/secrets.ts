/** Fixed, test-only credentials shared by the test Workers and the local fakes. Never used outside tests. */
export const TEST_AUTUMN_SECRET_KEY = "am_sk_test_tollgate_fixture";
export const TEST_WEBHOOK_SECRET = "whsec_dG9sbGdhdGUtdGVzdC13ZWJob29rLXNlY3JldC0zMmI=";
export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789abcdef";
export const TEST_INGEST_KEY_PEPPER = "test-ingest-key-pepper-0123456789";
export const TEST_NOTIFY_SECRET = "whsec_dG9sbGdhdGUtdGVzdC1ub3RpZnktc2VjcmV0LTMyYg==";
