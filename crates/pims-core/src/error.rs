use serde_json::{Map, Value};

/// Every code an app can receive, with the label the original reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    FacadeNotInitialized = 2001,
    ApiNotSupported = 2002,
    ComponentNotLoaded = 2003,
    DuplicateCommand = 2005,
    FacadeAlreadyInitialized = 2007,
    NotSet = 2010,
    MissingParameter = 2101,
    InvalidParameter = 2102,
    Timeout = 2201,
    NoInternet = 2202,
    ServerError = 2204,
    NeedBasicAuthentication = 2301,
    NeedStrongAuthentication = 2302,
    SmsCodeInvalid = 2305,
    SmsCodeExpired = 2306,
    NoPhoneNumber = 2307,
    AccessRefused = 2308,
    VersionError = 2309,
    AccountBlocked = 2310,
    InternalStateNotCorrect = 2311,
    DeviceDisabledOrUnknown = 2312,
    PriorAuthenticatorRequired = 2313,
    NoServiceAvailable = 2314,
    NewPinEqualsPrevious = 2315,
    PostSynchronizationFailed = 2316,
    ForbiddenOperation = 2317,
    NotVehicleOwner = 2323,
    SmartphoneNotPaired = 2342,
    ComponentNotConfigured = 2344,
    InvalidSignature = 2355,
    InvalidTimestamp = 2356,
    DoorsUnlocked = 2360,
    DoorsLocked = 2361,
    VinNotValid = 2366,
    BrokerConnectionFailed = 2377,
    PhoneNumberAlreadyRegistered = 2390,
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The label exactly as the reference spells it (placeholders included; see
    /// [`PimsError::missing`] and friends for the filled-in forms).
    pub fn label(self) -> &'static str {
        use ErrorCode::*;
        match self {
            FacadeNotInitialized => "Facade not initialized",
            ApiNotSupported => "API not supported",
            ComponentNotLoaded => "[Component] not loaded",
            DuplicateCommand => "Duplicate command",
            FacadeAlreadyInitialized => "Facade already initialized",
            NotSet => "[PARAMETER] not set",
            MissingParameter => "Missing [PARAMETER] parameter",
            InvalidParameter => "Invalid [PARAMETER] parameter",
            Timeout => "Timeout",
            NoInternet => "Network problem : No internet",
            ServerError => "Server Error",
            NeedBasicAuthentication => "Need Basic Authentication",
            NeedStrongAuthentication => "Need Strong Authentication",
            SmsCodeInvalid => "The sms code is invalid",
            SmsCodeExpired => "The sms code has expired",
            NoPhoneNumber => "User dont have a phone number",
            AccessRefused => "inwebo: access refused",
            VersionError => "inwebo: version error",
            // The trailing space is the reference's; apps may match on it.
            AccountBlocked => "inwebo: account is blocked ",
            InternalStateNotCorrect => "inwebo: internal state not correct",
            DeviceDisabledOrUnknown => "inwebo: device is disabled or unknown",
            PriorAuthenticatorRequired => "inwebo: User must activate inWebo helium or inWebo Desktop Token before achieving this operation",
            NoServiceAvailable => "inwebo: No service is available",
            NewPinEqualsPrevious => "inwebo: the new password equals the previous one",
            PostSynchronizationFailed => "inwebo: the operation succeeded but it required a post-synchronization which failed",
            ForbiddenOperation => "inwebo: forbidden operation (due to activated state/blocked state/upgradable state)",
            NotVehicleOwner => "You aren't the owner of this vehicle",
            SmartphoneNotPaired => "Smartphone not paired with the vehicle",
            ComponentNotConfigured => "[Component] not configured",
            InvalidSignature => "Invalid Signature",
            InvalidTimestamp => "Invalid Timestamp",
            DoorsUnlocked => "All vehicle's doors are unlocked",
            DoorsLocked => "All vehicle's doors are locked",
            VinNotValid => "VIN not valid for this request",
            BrokerConnectionFailed => "Broker connexion failed",
            PhoneNumberAlreadyRegistered => "Phone number allready registered",
        }
    }
}

impl ErrorCode {
    /// Whether the same call, unchanged, may succeed later (after `retryAfterSeconds` when
    /// given): the network, the server or a pending synchronisation. Everything else needs the
    /// user or the app to change something first (another PIN, a new SMS code, an enrollment).
    pub fn retryable(self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            Timeout
                | NoInternet
                | ServerError
                | NoServiceAvailable
                | PostSynchronizationFailed
                | BrokerConnectionFailed
        )
    }
}

/// The `error` object of a FAILED message: `{code, label}` plus, as additive extensions, an
/// optional `subCode {code, label}` and `details`.
#[derive(Debug, Clone, PartialEq)]
pub struct PimsError {
    pub code: ErrorCode,
    pub label: String,
    pub sub_code: Option<ErrorCode>,
    pub details: Map<String, Value>,
}

impl PimsError {
    pub fn new(code: ErrorCode) -> Self {
        PimsError {
            code,
            label: code.label().to_owned(),
            sub_code: None,
            details: Map::new(),
        }
    }

    /// 2101 naming the parameter, e.g. `Missing pinCode parameter`.
    pub fn missing(parameter: &str) -> Self {
        Self::named(ErrorCode::MissingParameter, "[PARAMETER]", parameter)
    }

    /// 2102 naming the parameter, e.g. `Invalid pinCode parameter`.
    pub fn invalid(parameter: &str) -> Self {
        Self::named(ErrorCode::InvalidParameter, "[PARAMETER]", parameter)
    }

    /// 2010 naming what was not set first, e.g. `vin not set`.
    pub fn not_set(parameter: &str) -> Self {
        Self::named(ErrorCode::NotSet, "[PARAMETER]", parameter)
    }

    /// 2003, e.g. `StrongAuthentication not loaded`.
    pub fn not_loaded(component: &str) -> Self {
        Self::named(ErrorCode::ComponentNotLoaded, "[Component]", component)
    }

    /// 2344, e.g. `StrongAuthentication not configured`.
    pub fn not_configured(component: &str) -> Self {
        Self::named(ErrorCode::ComponentNotConfigured, "[Component]", component)
    }

    fn named(code: ErrorCode, placeholder: &str, name: &str) -> Self {
        let mut e = Self::new(code);
        e.label = code.label().replace(placeholder, name);
        e
    }

    pub fn with_sub_code(mut self, sub_code: ErrorCode) -> Self {
        self.sub_code = Some(sub_code);
        self
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), self.code.code().into());
        obj.insert("label".into(), self.label.clone().into());
        if let Some(sub) = self.sub_code {
            obj.insert(
                "subCode".into(),
                serde_json::json!({"code": sub.code(), "label": sub.label()}),
            );
        }
        let mut details = self.details.clone();
        details
            .entry("retryable")
            .or_insert_with(|| self.code.retryable().into());
        obj.insert("details".into(), Value::Object(details));
        Value::Object(obj)
    }
}

impl From<ErrorCode> for PimsError {
    fn from(code: ErrorCode) -> Self {
        PimsError::new(code)
    }
}

impl std::fmt::Display for PimsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.code(), self.label)
    }
}

impl std::error::Error for PimsError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_name_the_parameter_or_component() {
        assert_eq!(
            PimsError::missing("pinCode").label,
            "Missing pinCode parameter"
        );
        assert_eq!(
            PimsError::invalid("smsCode").label,
            "Invalid smsCode parameter"
        );
        assert_eq!(
            PimsError::not_configured("StrongAuthentication").label,
            "StrongAuthentication not configured"
        );
        assert_eq!(
            PimsError::not_loaded("StrongAuthentication").label,
            "StrongAuthentication not loaded"
        );
    }

    #[test]
    fn json_keeps_base_keys_and_adds_extensions() {
        let e = PimsError::new(ErrorCode::SmsCodeInvalid)
            .with_sub_code(ErrorCode::SmsCodeExpired)
            .with_detail("attemptsRemaining", 2);
        assert_eq!(
            e.to_json(),
            json!({"code": 2305, "label": "The sms code is invalid",
                   "subCode": {"code": 2306, "label": "The sms code has expired"},
                   "details": {"attemptsRemaining": 2, "retryable": false}})
        );
        assert_eq!(
            PimsError::new(ErrorCode::NoServiceAvailable).to_json()["details"],
            json!({"retryable": true})
        );
    }
}
