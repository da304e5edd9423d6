-- A small EHR schema with made-up PHI, for the masking demo (README: "PHI masking").
-- psql -f examples/ehr_masking.sql <database>; every value here is invented.
CREATE SCHEMA IF NOT EXISTS ehr;

CREATE TABLE ehr.patients (
    id            bigint PRIMARY KEY,
    mrn           text NOT NULL,
    first_name    text NOT NULL,
    last_name     text NOT NULL,
    ssn           varchar(11),
    date_of_birth date,
    email         text,
    phone         text,
    address       text,
    notes         text,
    balance       numeric(10, 2) DEFAULT 0
);

CREATE TABLE ehr.encounters (
    id          bigint PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES ehr.patients (id),
    seen_on     date NOT NULL,
    reason      text NOT NULL
);

INSERT INTO ehr.patients VALUES
    (1, 'MRN00012345', 'Ada', 'Lovelace', '123-45-6789', '1980-12-10',
     'ada@example.org', '(555) 010-4477', '12 Analytical St', 'call 555-010-4477 after 5pm', 10.50),
    (2, 'MRN00067890', 'Alan', 'Turing', '987-65-4321', '1972-06-23',
     'alan@example.net', '555-010-9120', '3 Bletchley Rd', 'card on file 4111 1111 1111 1111', 0),
    (3, 'MRN00011111', 'Grace', 'Hopper', '222-33-4444', '1966-12-09',
     'grace.hopper@example.com', '+1 555 010 3344', '1 Harbor Way', 'born 12/09/1966', 99.99);

INSERT INTO ehr.encounters VALUES
    (1, 1, '2026-01-05', 'annual check-up'),
    (2, 1, '2026-03-17', 'follow-up'),
    (3, 2, '2026-02-02', 'flu'),
    (4, 3, '2026-04-30', 'referral from MRN00011111');

CREATE VIEW ehr.patient_contacts AS
    SELECT id, first_name || ' ' || last_name AS display_name, email, lower(email) AS login,
           phone, upper(ssn) AS ssn_upper
    FROM ehr.patients;
