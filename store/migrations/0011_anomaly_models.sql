-- Per-patient anomaly baselines. Every training run stores a new version; the engine uses the
-- newest. trained_through is the data cut-off: the model has seen no reading at or after it.
-- params holds a parametric model as JSON (no pickles: loading one would execute code).
CREATE TABLE anomaly_models (
    model_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id            text NOT NULL,
    patient_id        text NOT NULL,
    method            text NOT NULL,
    version           integer NOT NULL CHECK (version > 0),
    feature_version   integer NOT NULL,
    trained_at        timestamptz NOT NULL,
    trained_through   timestamptz NOT NULL,
    n_observations    integer NOT NULL,
    params            jsonb NOT NULL,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    UNIQUE (patient_id, method, version)
);
CREATE INDEX anomaly_models_latest ON anomaly_models (patient_id, method, version DESC);
