//! Every refusal the hub can give, with a stable code and a message in Chinese and English.
//!
//! Codes are part of the wire protocol: clients switch on them, so they never change
//! meaning. Add new ones at the end.

use serde::{Deserialize, Serialize};

use crate::domain::UnitId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded (bad JSON/MessagePack, unknown type, missing field).
    BadFrame,
    /// The frame is larger than the server accepts.
    FrameTooLarge,
    /// No valid token, or the action needs a family token.
    Unauthorized,
    /// The token has expired.
    TokenExpired,
    /// The token is valid but does not allow this (e.g. acting for another family).
    Forbidden,
    /// Too many messages or requests; slow down.
    RateLimited,
    UnknownBatch,
    UnknownFamily,
    UnknownUnit,
    UnknownSession,
    /// The unit's layout is not one the family may take.
    NotEligible,
    /// The list already holds five units.
    ListFull,
    AlreadyInList,
    NotInList,
    /// Another family holds the unit.
    UnitTaken,
    /// Confirm names a unit that is not in the intention list.
    NotInIntentions,
    /// The action is not allowed at this server time.
    WindowClosed,
    /// The declaration for this stage has not been accepted yet.
    DeclarationRequired,
    /// The family already has a unit; the result is final.
    AlreadyHasUnit,
    /// The family waived its selection.
    Waived,
    /// The family may not apply for supplementary selection (it has a unit, waived, or
    /// has no result yet).
    NotEligibleForSupplementary,
    AlreadyApplied,
    /// A list given whole is invalid (duplicates, too long).
    InvalidList,
    /// An operator request that conflicts with the batch (e.g. a batch id in use).
    Conflict,
    /// The deadline has not come yet, so the session cannot be closed.
    TooEarly,
    /// The server could not complete the request; it may be retried with the same req_id.
    Internal,
    /// The server is shutting down or overloaded; reconnect later.
    Unavailable,
    /// An operator's batch (upload or load) is invalid: the answer lists what.
    InvalidBatch,
    /// A session an operator publishes is invalid: not supplementary, no window, a start
    /// in the past, before the day's applications close, or overlapping a formal session.
    InvalidSession,
    /// There is no family to schedule (nobody applied, or all are scheduled already).
    NothingToSchedule,
    /// A request is malformed (a missing upload field, a body that does not parse).
    BadRequest,
    /// Signing needs a selected unit: the family has none (or its signing is not open).
    NotSelected,
    /// A signing step was asked for before the steps it needs are done.
    StepLocked,
    /// The signing step is done and can no longer be changed (a later step builds on it,
    /// or the application is submitted).
    StepDone,
    /// The phone number is not an 11-digit mainland mobile number.
    InvalidPhone,
    /// The bank is not on the list, or the card number is not 16 to 19 digits.
    InvalidCard,
    /// The card number fails the Luhn check and the applicant did not confirm it.
    LuhnUnconfirmed,
    /// A face verification result for a session other than the current one.
    FaceSessionMismatch,
    /// Face verification was tried too often; an operator must allow more attempts.
    TooManyAttempts,
    /// A deposit order can still be paid; no new one until it expires.
    OrderPending,
    /// A payment that does not match the current deposit order (unknown order number,
    /// other amount, other transaction).
    PaymentMismatch,
    /// A payment for a deposit order that has expired.
    OrderExpired,
    /// The review decision needs an application waiting for review.
    NotInReview,
    /// A `refresh` token that is valid but cannot replace the connection's: it names
    /// another person or role, or it expires before the connection's token does.
    TokenMismatch,
}

impl ErrorCode {
    /// Message shown to the family, Chinese first.
    pub fn zh(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame => "消息格式错误",
            FrameTooLarge => "消息过大",
            Unauthorized => "请先登录",
            TokenExpired => "登录已过期，请重新登录",
            Forbidden => "无权进行此操作",
            RateLimited => "操作过于频繁，请稍后再试",
            UnknownBatch => "选房批次不存在",
            UnknownFamily => "选房家庭不存在",
            UnknownUnit => "房源不存在",
            UnknownSession => "场次不存在",
            NotEligible => "该房源户型不在您家庭可选范围内",
            ListFull => "最多只能选择5套房源",
            AlreadyInList => "该房源已在列表中",
            NotInList => "该房源不在列表中",
            UnitTaken => "该房源已被其他家庭选定",
            NotInIntentions => "只能从我的意向中确认房源",
            WindowClosed => "当前不在可操作时间内",
            DeclarationRequired => "请先勾选我已阅读并同意声明",
            AlreadyHasUnit => "您已选定房源，结果不可更改",
            Waived => "您已放弃选房",
            NotEligibleForSupplementary => "您不符合补选申请条件",
            AlreadyApplied => "您已提交补选申请",
            InvalidList => "房源列表无效",
            Conflict => "与现有数据冲突",
            TooEarly => "选房时间尚未结束",
            Internal => "系统繁忙，请重试",
            Unavailable => "服务暂不可用，请稍后重连",
            InvalidBatch => "选房批次数据有误",
            InvalidSession => "场次设置有误",
            NothingToSchedule => "没有待安排的家庭",
            BadRequest => "请求格式有误",
            NotSelected => "您尚未选定房源，不能签约",
            StepLocked => "请先完成上一步",
            StepDone => "该步骤已完成，不能再修改",
            InvalidPhone => "请输入正确的11位手机号码",
            InvalidCard => "请选择列表中的银行，并填写16至19位数字的银行卡号",
            LuhnUnconfirmed => "银行卡号校验未通过，请核对卡号；确认无误请勾选确认",
            FaceSessionMismatch => "人脸识别结果与当前识别不符",
            TooManyAttempts => "人脸识别次数过多，请联系工作人员",
            OrderPending => "已有待支付的保证金订单，请完成支付或等待订单过期",
            PaymentMismatch => "支付信息与当前订单不符",
            OrderExpired => "订单已过期，请重新发起支付",
            NotInReview => "该签约申请不在待审核状态",
            TokenMismatch => "新的登录凭证与当前账户不符，请重新登录",
        }
    }

    /// Message in English.
    pub fn en(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame => "Malformed message",
            FrameTooLarge => "Message too large",
            Unauthorized => "Please log in",
            TokenExpired => "Your login has expired; please log in again",
            Forbidden => "Not allowed",
            RateLimited => "Too many requests; please slow down",
            UnknownBatch => "No such batch",
            UnknownFamily => "No such family",
            UnknownUnit => "No such unit",
            UnknownSession => "No such session",
            NotEligible => "Your household may not take this layout",
            ListFull => "At most 5 units",
            AlreadyInList => "The unit is already in the list",
            NotInList => "The unit is not in the list",
            UnitTaken => "Another family has taken this unit",
            NotInIntentions => "Only a unit from your intentions can be confirmed",
            WindowClosed => "Not allowed at this time",
            DeclarationRequired => "Please accept the declaration first",
            AlreadyHasUnit => "You already have a unit; the result is final",
            Waived => "You waived your selection",
            NotEligibleForSupplementary => "You may not apply for supplementary selection",
            AlreadyApplied => "You have already applied",
            InvalidList => "Invalid list of units",
            Conflict => "Conflicts with existing data",
            TooEarly => "The selection window has not ended yet",
            Internal => "Server busy; please retry",
            Unavailable => "Service unavailable; reconnect later",
            InvalidBatch => "The batch data is invalid",
            InvalidSession => "The session is invalid",
            NothingToSchedule => "No family is waiting to be scheduled",
            BadRequest => "Malformed request",
            NotSelected => "You have no selected unit to sign for",
            StepLocked => "Please complete the previous step first",
            StepDone => "This step is done and can no longer be changed",
            InvalidPhone => "Please enter a valid 11-digit mobile number",
            InvalidCard => "Choose a bank from the list and enter a card number of 16 to 19 digits",
            LuhnUnconfirmed => "The card number fails the check; correct it or confirm it is right",
            FaceSessionMismatch => "The face verification result is not for the current attempt",
            TooManyAttempts => "Too many face verification attempts; please contact staff",
            OrderPending => "A deposit order awaits payment; pay it or wait until it expires",
            PaymentMismatch => "The payment does not match the current deposit order",
            OrderExpired => "The order has expired; please pay again",
            NotInReview => "The application is not waiting for review",
            TokenMismatch => "The new login is not for this account; please log in again",
        }
    }
}

/// A refused action: the code, and the unit it concerns when there is one (the unit
/// already held, for [`ErrorCode::AlreadyHasUnit`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}")]
pub struct Rejection {
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitId>,
}

impl Rejection {
    pub fn new(code: ErrorCode) -> Self {
        Self { code, unit: None }
    }
    pub fn with_unit(code: ErrorCode, unit: UnitId) -> Self {
        Self {
            code,
            unit: Some(unit),
        }
    }
}

impl From<ErrorCode> for Rejection {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}
