// The signing pages (网上签约, 材料管理) as routes of the phone app.

import * as status from './status.js';
import * as details from './details.js';
import * as face from './face.js';
import * as contract from './contract.js';
import * as deposit from './deposit.js';
import * as materials from './materials.js';

export const SIGNING_VIEWS = {
  sign: status,
  sign_details: details,
  sign_face: face,
  sign_contract: contract,
  sign_deposit: deposit,
  materials,
};

/** 返回 from a step leads to the signing progress, from there home. */
export const SIGNING_PARENT = {
  sign: 'home',
  sign_details: 'sign',
  sign_face: 'sign',
  sign_contract: 'sign',
  sign_deposit: 'sign',
  materials: 'home',
};
